"""The synthetic multi-person dataset: determinism, COCO validity, visibility semantics."""
import contextlib
import io
import json
import pathlib
import subprocess
import sys

import cv2
import numpy as np
import pytest

from keras_pose.data import _figure as fig
from keras_pose.data import _render as rnd
from keras_pose.data import synthetic as syn
from keras_pose.skeleton import COCO

SIZE = (96, 128)   # (H, W): not square, so that a swapped axis shows


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("synthetic")
    return syn.generate_dataset(out, 20, 6, seed=3, image_size=SIZE, progress=False)


def _scenes(n, config, size=(128, 128), first_seed=0):
    for s in range(first_seed, first_seed + n):
        yield syn.make_scene(np.random.default_rng(s), size, config, return_info=True)


def _files(paths, split):
    return sorted(pathlib.Path(paths[f"{split}_images"]).glob("*.jpg"))


def test_same_seed_gives_identical_bytes(dataset, tmp_path):
    again = syn.generate_dataset(tmp_path / "a", 20, 6, seed=3, image_size=SIZE, progress=False)
    other = syn.generate_dataset(tmp_path / "b", 3, 1, seed=4, image_size=SIZE, progress=False)
    for split in ("train", "val"):
        a = pathlib.Path(dataset[f"{split}_annotations"])
        b = pathlib.Path(again[f"{split}_annotations"])
        assert a.read_bytes() == b.read_bytes()
        fa, fb = _files(dataset, split), _files(again, split)
        assert [f.name for f in fa] == [f.name for f in fb]
        assert len(fa) == (20 if split == "train" else 6)
        assert all(x.read_bytes() == y.read_bytes() for x, y in zip(fa, fb))
    # Another seed, and the val split (a disjoint seed stream), give other scenes.
    assert _files(other, "train")[0].read_bytes() != _files(dataset, "train")[0].read_bytes()
    assert _files(dataset, "val")[0].read_bytes() != _files(dataset, "train")[0].read_bytes()


def test_worker_processes_give_the_same_files(dataset, tmp_path):
    par = syn.generate_dataset(tmp_path, 20, 6, seed=3, image_size=SIZE, num_workers=2,
                               progress=False)
    for split in ("train", "val"):
        assert (pathlib.Path(par[f"{split}_annotations"]).read_bytes()
                == pathlib.Path(dataset[f"{split}_annotations"]).read_bytes())
        assert [f.read_bytes() for f in _files(par, split)] == \
            [f.read_bytes() for f in _files(dataset, split)]


def test_coco_layout_and_fields(dataset):
    doc = json.loads(pathlib.Path(dataset["train_annotations"]).read_text())
    (cat,) = doc["categories"]
    assert cat["keypoints"] == list(COCO.names) and cat["id"] == 1
    assert cat["skeleton"] == [[a + 1, b + 1] for a, b in COCO.skeleton]
    h, w = SIZE
    for im in doc["images"]:
        arr = cv2.imread(str(pathlib.Path(dataset["train_images"]) / im["file_name"]))
        assert arr.shape == (h, w, 3) and (im["height"], im["width"]) == SIZE
    ids = [a["id"] for a in doc["annotations"]]
    assert len(set(ids)) == len(ids)
    for a in doc["annotations"]:
        kp = np.asarray(a["keypoints"], float).reshape(17, 3)
        assert set(np.unique(kp[:, 2])) <= {0, 1, 2}
        assert a["num_keypoints"] == int((kp[:, 2] > 0).sum())
        assert np.all(kp[kp[:, 2] == 0, :2] == 0)
        vis = kp[kp[:, 2] > 0]
        assert np.all((vis[:, 0] > -0.5) & (vis[:, 0] < w - 0.5))
        assert np.all((vis[:, 1] > -0.5) & (vis[:, 1] < h - 0.5))
        x, y, bw, bh = a["bbox"]
        assert bw > 0 and bh > 0 and 0 <= x and x + bw <= w and 0 <= y and y + bh <= h
        assert 0 < a["area"] <= bw * bh and a["category_id"] == 1


def test_loads_in_pycocotools_and_self_evaluation_is_perfect(dataset):
    from pycocotools.coco import COCO as CocoApi
    from pycocotools.cocoeval import COCOeval
    with contextlib.redirect_stdout(io.StringIO()):
        gt = CocoApi(dataset["train_annotations"])
        res = [{"image_id": a["image_id"], "category_id": 1, "keypoints": a["keypoints"],
                "score": 1.0}
               for a in gt.dataset["annotations"] if not a["iscrowd"] and a["num_keypoints"] > 0]
        assert len(res) > 20
        ev = COCOeval(gt, gt.loadRes(res), "keypoints")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    assert ev.stats[0] == pytest.approx(1.0)
    # Every mask decodes; the crowd RLE covers exactly its area.
    for a in gt.dataset["annotations"]:
        m = gt.annToMask(a)
        assert m.shape == SIZE and m.any()
        if a["iscrowd"]:
            assert int(m.sum()) == a["area"]


def test_visibility_follows_the_label_map():
    """v=2: the pixel under the keypoint is the joint itself, in that figure's flat
    colour; v=1: something drawn later (nearer) covers it; v=0: outside or a face
    point turned away."""
    clean = syn.get_preset("clean")
    counts = {"v2": 0, "v1_other": 0, "v1_self": 0, "out": 0, "face": 0, "dropped": 0}
    for img, anns, info in _scenes(25, clean, (128, 112)):
        lab, parts, colours = info["labels"], info["parts"], info["colours"]
        h, w = lab.shape
        for fi, f in enumerate(info["figures"]):
            proj = rnd.pixel_of(np.round(f["xy"], 2))
            inside = (proj[:, 0] >= 0) & (proj[:, 0] < w) & (proj[:, 1] >= 0) & (proj[:, 1] < h)
            if f["annotation"] is None:   # only crowd members and hidden figures lack one
                seen = [int(lab[j, i]) in f["owners"][k] and f["face_visible"][k]
                        for k, (i, j) in enumerate(proj) if inside[k]]
                assert f["crowd"] or not any(seen)
                counts["dropped"] += int(not f["crowd"])
                continue
            kp = np.asarray(anns[f["annotation"]]["keypoints"], float).reshape(17, 3)
            for k in range(17):
                x, y, v = kp[k]
                if f["unannotated"]:
                    assert v == 0
                    continue
                if v == 0:
                    assert x == y == 0
                    assert not inside[k] or not f["face_visible"][k]
                    counts["out" if not inside[k] else "face"] += 1
                    continue
                assert inside[k] and np.allclose((x, y), np.round(f["xy"][k], 2))
                i, j = rnd.pixel_of((x, y))
                label = int(lab[j, i])
                if v == 2:
                    assert label in f["owners"][k] and parts[label, 0] == fi
                    np.testing.assert_array_equal(img[j, i], colours[label])
                    counts["v2"] += 1
                else:
                    # covered by something drawn later (nearer)
                    assert label > max(f["owners"][k])
                    assert parts[label, 0] >= fi
                    np.testing.assert_array_equal(img[j, i], colours[label])   # the coverer's colour
                    counts["v1_other" if parts[label, 0] > fi else "v1_self"] += 1
    assert all(c > 0 for c in counts.values()), counts


def test_truncated_keypoints_are_unlabelled():
    cfg = syn.get_preset("clean").replace(truncation=1.0, min_height=0.4)
    seen = 0
    for img, anns, info in _scenes(10, cfg, (80, 80)):
        for f in info["figures"]:
            if f["annotation"] is None or f["unannotated"]:
                continue
            kp = np.asarray(anns[f["annotation"]]["keypoints"], float).reshape(17, 3)
            px = rnd.pixel_of(np.round(f["xy"], 2))
            out = (px < 0).any(1) | (px[:, 0] >= 80) | (px[:, 1] >= 80)
            assert np.all(kp[out] == 0)
            seen += int(out.sum())
    assert seen > 10


def test_crowds_unannotated_figures_heights_and_masks():
    cfg = syn.get_preset("default")
    crowd = zero_kp = big_overlap = 0
    for img, anns, info in _scenes(40, cfg, (64, 64), first_seed=100):
        assert img.shape == (64, 64, 3) and img.dtype == np.uint8
        lab = info["labels"]
        for f in info["figures"]:
            if not f["crowd"]:
                assert cfg.min_height * 64 - 1e-6 <= f["scale"] <= cfg.max_height * 64 + 1e-6
        for a in anns:
            crowd += a["iscrowd"]
            zero_kp += int(a["num_keypoints"] == 0 and not a["iscrowd"])
        for f in info["figures"]:
            if f["annotation"] is None:
                continue
            a = anns[f["annotation"]]
            vis = (lab >= f["labels"][0]) & (lab < f["labels"][1])
            assert int(vis.sum()) == a["area"]
            if a["area"] > 80:   # the polygons trace the visible pixels
                poly = np.zeros_like(lab, np.uint8)
                for p in a["segmentation"]:
                    cv2.fillPoly(poly, [np.round(np.asarray(p).reshape(-1, 2)).astype(np.int32)], 1)
                iou = (vis & (poly > 0)).sum() / (vis | (poly > 0)).sum()
                assert iou > 0.85
                big_overlap += 1
    assert crowd >= 2 and zero_kp >= 2 and big_overlap > 10


def test_make_scene_is_deterministic_and_sized():
    a = syn.make_scene(np.random.default_rng(7), (72, 40))
    b = syn.make_scene(np.random.default_rng(7), (72, 40))
    assert a[0].shape == (72, 40, 3)
    np.testing.assert_array_equal(a[0], b[0])
    assert a[1] == b[1]


def test_kinematics_bones_sides_and_face_visibility():
    rng = np.random.default_rng(0)
    for posture in fig.POSTURES:
        for _ in range(5):
            body = fig.sample_body(rng)
            pts, extra, normals = fig.pose_points(body, fig.sample_angles(rng, posture))
            kp = fig.KP
            assert np.isfinite(pts).all()
            for side in ("left", "right"):
                j = lambda n: pts[kp[f"{side}_{n}"]]  # noqa: E731
                assert np.linalg.norm(j("elbow") - j("shoulder")) == pytest.approx(body.upper_arm)
                assert np.linalg.norm(j("wrist") - j("elbow")) == pytest.approx(body.forearm)
                assert np.linalg.norm(j("knee") - j("hip")) == pytest.approx(body.thigh)
                assert np.linalg.norm(j("ankle") - j("knee")) == pytest.approx(body.shin)

    def posed(yaw):
        a = fig.Angles(yaw=yaw)
        pts, _, normals = fig.pose_points(fig.Body(), a)
        return pts, fig.face_visible(normals)

    pts, vis = posed(0.0)      # facing the camera: the figure's left is on the image right
    assert pts[fig.KP["left_shoulder"], 0] > pts[fig.KP["right_shoulder"], 0] and vis.all()
    assert pts[fig.KP["left_ankle"], 1] > pts[fig.KP["left_hip"], 1] > pts[0, 1]
    pts, vis = posed(90.0)     # profile: one ear and its eye are hidden
    assert vis[:5].sum() == 3 and vis[0]
    pts, vis = posed(180.0)    # back view: nose and eyes hidden, both ears seen
    assert pts[fig.KP["left_shoulder"], 0] < pts[fig.KP["right_shoulder"], 0]
    assert not vis[:3].any() and vis[3:5].all()


def test_bad_arguments_fail_with_a_clear_message(tmp_path):
    with pytest.raises(ValueError, match="max_figures"):
        syn.SyntheticConfig(min_figures=3, max_figures=2).validate()
    with pytest.raises(ValueError, match="overlap"):
        syn.PRESETS["default"].replace(overlap=1.5)
    with pytest.raises(ValueError, match="unknown synthetic preset"):
        syn.get_preset("nope")
    with pytest.raises(ValueError, match="num_train"):
        syn.generate_dataset(tmp_path, -1, 0, progress=False)
    with pytest.raises(ValueError, match="image_size"):
        syn.make_scene(np.random.default_rng(0), "big")
    cfg = syn.SyntheticConfig.from_json(syn.PRESETS["easy"].to_json())
    assert cfg == syn.PRESETS["easy"]


def test_cli_writes_both_splits(tmp_path):
    out = tmp_path / "ds"
    r = subprocess.run([sys.executable, "-m", "keras_pose.data.synthetic", "--out", str(out),
                        "--num_images", "3", "--val_images", "2", "--seed", "5",
                        "--image_size", "64x80", "--preset", "easy", "--quiet",
                        "--preview", str(tmp_path / "p.png")],
                       capture_output=True, text=True, timeout=120,
                       cwd=pathlib.Path(__file__).resolve().parents[1])
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    assert summary["images"] == 5 and summary["images_per_s"] > 0
    for split, n in (("train", 3), ("val", 2)):
        doc = json.loads((out / "annotations" / f"person_keypoints_{split}.json").read_text())
        assert len(doc["images"]) == n and doc["info"]["split"] == split
        assert cv2.imread(str(out / split / doc["images"][0]["file_name"])).shape == (64, 80, 3)
    assert cv2.imread(str(tmp_path / "p.png")).shape[:2] == (2 * 64 + 4, 3 * 64 + 8)
    bad = subprocess.run([sys.executable, "-m", "keras_pose.data.synthetic", "--out", str(out),
                          "--num_images", "1", "--image_size", "6x4x2"],
                         capture_output=True, text=True, timeout=60,
                         cwd=pathlib.Path(__file__).resolve().parents[1])
    assert bad.returncode != 0 and "--image_size" in bad.stderr


@pytest.mark.parametrize("preset", sorted(syn.PRESETS))
def test_every_preset_makes_valid_scenes(preset):
    cfg = syn.get_preset(preset)
    n_people = []
    for s in range(6):
        img, anns = syn.make_scene(np.random.default_rng(s), (48, 64), cfg)
        assert img.shape == (48, 64, 3) and img.dtype == np.uint8
        for a in anns:
            kp = np.asarray(a["keypoints"]).reshape(17, 3)
            assert a["num_keypoints"] == int((kp[:, 2] > 0).sum())
            assert a["area"] > 0 and a["segmentation"]
        n_people.append(sum(not a["iscrowd"] for a in anns))
    assert max(n_people) <= cfg.max_figures and sum(n_people) > 0
