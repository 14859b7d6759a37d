"""COCO keypoint evaluation through pycocotools (no TensorFlow)."""
import json

import numpy as np
import pytest

from keras_pose.evaluation import (
    STAT_NAMES, evaluate_keypoints, format_stats, load_results, print_stats,
    results_from_poses, write_results,
)
from keras_pose.structures import Poses


def _gt_results(gt: dict, noise: float = 0.0, seed: int = 0) -> list:
    """Detections copied from the GT persons with keypoints, optionally jittered."""
    rng = np.random.default_rng(seed)
    out = []
    for a in gt["annotations"]:
        if a.get("num_keypoints", 0) == 0 or a.get("iscrowd", 0):
            continue
        kp = np.asarray(a["keypoints"], np.float64).reshape(-1, 3)
        kp[:, :2] += rng.normal(0, noise, kp[:, :2].shape) * (kp[:, 2:] > 0)
        kp[:, 2] = (kp[:, 2] > 0).astype(np.float64)
        out.append({"image_id": a["image_id"], "category_id": 1,
                    "keypoints": kp.reshape(-1).tolist(), "score": 0.9})
    return out


@pytest.fixture(scope="module")
def sample_gt(coco_sample_dir):
    path = coco_sample_dir / "test_coco.json"
    return path, json.loads(path.read_text())


def test_perfect_results_give_ap_one(sample_gt):
    path, gt = sample_gt
    stats = evaluate_keypoints(_gt_results(gt), path)
    assert tuple(stats) == STAT_NAMES
    assert stats["AP"] == pytest.approx(1.0)
    assert stats["AR"] == pytest.approx(1.0)
    assert stats["AP50"] == pytest.approx(1.0)


def test_jittered_results_lower_ap_monotonically(sample_gt):
    path, gt = sample_gt
    ap = [evaluate_keypoints(_gt_results(gt, noise), path)["AP"] for noise in (0.0, 4.0, 12.0)]
    assert ap[0] > ap[1] > ap[2] >= 0.0


def test_empty_results_give_zero_without_crash(sample_gt, capsys):
    path, _ = sample_gt
    stats = evaluate_keypoints([], path)
    assert stats["AP"] == 0.0 and stats["AR"] == 0.0
    assert capsys.readouterr().out == ""  # pycocotools' prints are silenced by default


def test_quiet_false_lets_pycocotools_print(sample_gt, capsys):
    path, gt = sample_gt
    evaluate_keypoints(_gt_results(gt)[:1], path, quiet=False)
    assert "Average Precision" in capsys.readouterr().out


def test_unknown_image_id_is_a_clear_error(sample_gt):
    path, gt = sample_gt
    res = _gt_results(gt)
    res[0] = dict(res[0], image_id=123456789)
    with pytest.raises(ValueError, match="123456789"):
        evaluate_keypoints(res, path)
    with pytest.raises(ValueError, match="keypoint values"):
        evaluate_keypoints([dict(res[1], keypoints=[1.0, 2.0, 1.0])], path)
    with pytest.raises(FileNotFoundError, match="nope.json"):
        evaluate_keypoints(res[1:], path.parent / "nope.json")


def test_image_id_subset(sample_gt):
    path, gt = sample_gt
    res = [r for r in _gt_results(gt) if r["image_id"] == 785]
    assert res
    # Over all images, the missing detections cost recall; on image 785 alone, all is found.
    assert evaluate_keypoints(res, path)["AR"] < 1.0
    assert evaluate_keypoints(res, path, image_ids=[785])["AP"] == pytest.approx(1.0)


def test_write_and_read_results_roundtrip(sample_gt, tmp_path):
    path, gt = sample_gt
    res = _gt_results(gt, noise=2.0)
    res[0]["score"] = np.float32(0.5)  # NumPy scalars are written as plain numbers
    out = write_results(res, tmp_path / "sub" / "results.json")
    back = load_results(out)
    assert len(back) == len(res) and back[0]["score"] == 0.5
    assert evaluate_keypoints(out, path) == evaluate_keypoints(back, path)


def test_results_from_poses_and_gt_dict(sample_gt):
    _, gt = sample_gt
    by_image = {}
    for r in _gt_results(gt):
        kp = np.asarray(r["keypoints"], np.float32).reshape(1, 17, 3)
        old = by_image.get(r["image_id"])
        new = Poses(kp, [r["score"]])
        by_image[r["image_id"]] = new if old is None else Poses(
            np.concatenate([old.keypoints, kp]), np.concatenate([old.scores, new.scores]))
    res = results_from_poses(by_image)
    assert len(res) == sum(len(p) for p in by_image.values())
    assert evaluate_keypoints(res, gt)["AP"] == pytest.approx(1.0, abs=1e-3)  # 2-decimal rounding


def test_format_stats_table():
    stats = dict(zip(STAT_NAMES, np.linspace(0.1, 1.0, 10)))
    text = format_stats(stats)
    lines = text.splitlines()
    assert len(lines) == 10
    assert "OKS=0.50:0.95" in lines[0] and lines[0].endswith("0.100")
    assert "Average Recall" in lines[5] and lines[-1].endswith("1.000")


def test_print_stats_writes_table(capsys):
    print_stats(dict.fromkeys(STAT_NAMES, 0.5))
    assert capsys.readouterr().out.count("0.500") == 10
