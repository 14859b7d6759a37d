"""PCKh@0.5 (MPII): head-size threshold, visible joints only, grouped summary, matching."""
from __future__ import annotations

import json

import numpy as np
import pytest

from keras_pose.evaluation import pckh as P
from keras_pose.skeleton import load_spec

K = 16


def _person(rng, x0=100.0):
    gt = rng.uniform(0, 80, (K, 2)) + x0
    return gt, np.ones(K, bool), np.array([x0, x0, x0 + 30, x0 + 40])   # diagonal 50 -> size 30


def test_joint_order_is_the_mpii_spec():
    assert P.MPII_JOINTS == load_spec("mpii").names


def test_head_size_and_the_threshold_edge():
    assert P.head_sizes([[0, 0, 30, 40]]).tolist() == [30.0]      # 0.6 * 50
    rng = np.random.default_rng(0)
    gt, vis, box = _person(rng)
    pred = gt.copy()
    pred[0, 0] += 14.9      # 0.497 of the head size: correct at 0.5
    pred[1, 1] += 15.1      # 0.503: wrong
    s = P.pckh(pred[None], gt[None], vis[None], box[None])
    assert s["per_joint"]["right_ankle"] == 100.0 and s["per_joint"]["right_knee"] == 0.0
    assert s["Mean"] == pytest.approx(100 * 13 / 14)     # pelvis and thorax are not in the mean
    assert s["Knee"] == 50.0 and s["Head"] == 100.0
    assert P.pckh(pred[None], gt[None], vis[None], box[None], threshold=0.6)["Mean"] == 100.0


def test_invisible_and_missing_joints():
    rng = np.random.default_rng(1)
    gt, vis, box = _person(rng)
    pred = np.concatenate([gt, np.ones((K, 1))], 1)
    pred[2, :] = (0, 0, 0)                 # right hip not found: wrong
    vis[3] = False                          # left hip unlabelled: does not count
    pred[3, :2] += 1000
    s = P.pckh(pred[None], gt[None], vis[None], box[None])
    assert s["per_joint"]["right_hip"] == 0.0 and np.isnan(s["per_joint"]["left_hip"])
    assert np.isnan(s["Hip"])               # a side that never counts leaves the group NaN
    assert s["Mean"] == pytest.approx(100 * 12 / 13) and s["num_joints"] == 15


def test_bottom_up_predictions_are_matched_to_persons(tmp_path):
    rng = np.random.default_rng(2)
    people = [_person(rng, x0) for x0 in (0.0, 300.0)]
    ann = [{"image": "a.jpg", "joints": gt.tolist(), "joints_vis": vis.astype(int).tolist(),
            "headbox": box.tolist()} for gt, vis, box in people]
    path = tmp_path / "mpii.json"
    path.write_text(json.dumps(ann))
    preds = np.stack([np.concatenate([gt + 2.0, np.ones((K, 1))], 1) for gt, _, _ in people])
    # reversed order plus a stray person: the matching pairs them back
    stray = np.concatenate([rng.uniform(500, 600, (K, 2)), np.ones((K, 1))], 1)
    s = P.evaluate_pckh({"a.jpg": np.concatenate([preds[::-1], stray[None]])}, str(path))
    assert s["Mean"] == 100.0
    s = P.evaluate_pckh({"a.jpg": preds[:1]}, str(path))     # one person never predicted
    assert s["Mean"] == 50.0
    assert "Mean 50.0" in P.format_pckh(s)


def test_bad_mpii_files(tmp_path):
    p = tmp_path / "bad.json"
    p.write_text(json.dumps([{"image": "a.jpg", "joints": [[0, 0]] * 16}]))
    with pytest.raises(ValueError, match="bad.json: person 0 lacks joints_vis, headbox"):
        P.load_mpii(str(p))
    p.write_text("{}")
    with pytest.raises(ValueError, match="a JSON list of persons"):
        P.load_mpii(str(p))


def test_a_bottom_up_model_is_scored_on_mpii_format_files(tmp_path):
    """The whole path: images on disk -> PosePredictor (16-joint head) -> matching -> PCKh."""
    from keras_pose.data import synthetic
    from keras_pose.inference.predictor import PosePredictor
    from keras_pose.models import presets
    from keras_pose.train.tasks import get_task

    mpii = load_spec("mpii")
    p = synthetic.generate_dataset(tmp_path, 0, 3, image_size=(64, 64), config="quickstart",
                                   progress=False, spec=mpii)
    coco = json.loads(open(p["val_annotations"]).read())
    names = {i["id"]: i["file_name"] for i in coco["images"]}
    ann = []
    for a in coco["annotations"]:
        kp = np.asarray(a["keypoints"]).reshape(16, 3)
        if a["num_keypoints"] and kp[9, 2] > 0 and kp[8, 2] > 0:
            top, neck = kp[9, :2], kp[8, :2]
            r = max(np.linalg.norm(top - neck), 2.0)
            ann.append({"image": names[a["image_id"]], "joints": kp[:, :2].tolist(),
                        "joints_vis": (kp[:, 2] > 0).astype(int).tolist(),
                        "headbox": [*(top - r).tolist(), *(top + r).tolist()]})
    assert ann
    cfg = presets.for_spec(presets.get_preset("imhn_test"), mpii)
    task = get_task("bottom_up", cfg, spec=mpii)
    predictor = PosePredictor(presets.build_model(cfg), codec=task.codec, output=cfg.inference_output)
    stats = P.evaluate_predictor_pckh(predictor, ann, p["val_images"])
    assert stats["num_images"] == len({a["image"] for a in ann})
    assert set(stats["per_joint"]) == set(P.MPII_JOINTS) and 0.0 <= stats["Mean"] <= 100.0
    assert stats["num_joints"] == sum(sum(a["joints_vis"]) for a in ann)
