"""BodyPartsCodec round trip on real COCO annotations: encode -> decode -> COCOeval.

Each image is resized as inference does (docs/method_bottom_up.md §5.2: height 640, one
scale, padded bottom/right to a multiple of 64; only the keypoints are scaled,
no pixels are read), its annotations are encoded into the 50 target maps, the
maps are decoded and mapped back to the original pixels with the inverse
transform record, and pycocotools scores them against the same file.
"""
import contextlib
import copy
import io
import json

import numpy as np

from keras_pose.codecs import BodyPartsCodec
from keras_pose.geometry import letterbox_geometry
from keras_pose.structures import apply_affine, invert_affine

CODEC = BodyPartsCodec()


def _coco(dataset: dict):
    from pycocotools.coco import COCO
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = copy.deepcopy(dataset)
        gt.createIndex()
    return gt


def _keypoint_ap(dataset: dict, results: list) -> float:
    from pycocotools.cocoeval import COCOeval
    gt = _coco(dataset)
    with contextlib.redirect_stdout(io.StringIO()):
        dt = gt.loadRes(results)
        ev = COCOeval(gt, dt, "keypoints")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return float(ev.stats[0])


def _round_trip(image_hw, keypoints, image_id) -> list:
    """COCO-order (N, 17, 3) annotations of one image -> decoded COCO results."""
    (content_h, _), (out_h, out_w), m = letterbox_geometry(image_hw, height=640, multiple=64)
    kp = np.asarray(keypoints, np.float32).reshape(-1, 17, 3).copy()
    labelled = kp[..., 2] > 0
    kp[..., :2] = np.where(labelled[..., None], apply_affine(kp[..., :2], m), 0)
    maps = CODEC.encode(kp, (out_h, out_w))["heatmaps"]
    poses = CODEC.decode(maps, image_height=content_h)
    return poses.transform(invert_affine(m)).to_coco(image_id)


def test_round_trip_coco_sample(coco_sample_dir):
    with open(coco_sample_dir / "test_coco.json") as f:
        dataset = json.load(f)
    results = []
    for img in dataset["images"]:
        anns = [a for a in dataset["annotations"]
                if a["image_id"] == img["id"] and not a.get("iscrowd") and a["num_keypoints"] > 0]
        kp = np.asarray([a["keypoints"] for a in anns], np.float32).reshape(-1, 17, 3)
        results += _round_trip((img["height"], img["width"]), kp, img["id"])
    ap = _keypoint_ap(dataset, results)
    print(f"\nround-trip keypoint AP on the COCO sample: {ap:.4f} ({len(results)} persons)")
    assert ap >= 0.90


def _crowd(poses: np.ndarray, size=(640, 640), seed=0):
    """The real poses, rescaled to 260-340 px tall and packed around the centre of
    the image so that each overlaps several others (>= 6 persons)."""
    rng = np.random.default_rng(seed)
    out = []
    for i, p in enumerate(poses):
        lab = p[:, 2] > 0
        xy = p[lab, :2]
        lo, hi = xy.min(0), xy.max(0)
        scale = rng.uniform(260, 340) / max(hi[1] - lo[1], hi[0] - lo[0], 1.0)
        centre = np.array([size[1] / 2 + 200 * np.cos(2.4 * i), size[0] / 2 + 140 * np.sin(2.4 * i)])
        q = p.copy()
        q[:, :2] = np.where(lab[:, None], (p[:, :2] - (lo + hi) / 2) * scale + centre, 0)
        out.append(q)
    return np.asarray(out, np.float32)


def _overlaps(kp):
    boxes = []
    for p in kp:
        xy = p[p[:, 2] > 0, :2]
        boxes.append(np.concatenate([xy.min(0), xy.max(0)]))
    boxes = np.asarray(boxes)
    lo = np.maximum(boxes[:, None, :2], boxes[None, :, :2])
    hi = np.minimum(boxes[:, None, 2:], boxes[None, :, 2:])
    inter = np.prod(np.clip(hi - lo, 0, None), axis=-1)
    np.fill_diagonal(inter, 0)
    return (inter > 0).sum(1)


def test_round_trip_crowded_scene(coco_sample_dir):
    with open(coco_sample_dir / "test_coco.json") as f:
        real = json.load(f)
    poses = np.asarray([a["keypoints"] for a in real["annotations"]
                        if not a.get("iscrowd") and a["num_keypoints"] >= 6], np.float32).reshape(-1, 17, 3)
    kp = _crowd(poses)
    assert len(kp) >= 6 and np.median(_overlaps(kp)) >= 4   # each overlaps ~6 others
    anns = []
    for i, p in enumerate(kp):
        xy = p[p[:, 2] > 0, :2]
        x0, y0 = xy.min(0)
        w, h = xy.max(0) - xy.min(0)
        anns.append({"id": i + 1, "image_id": 1, "category_id": 1, "iscrowd": 0,
                     "keypoints": p.reshape(-1).tolist(), "num_keypoints": int((p[:, 2] > 0).sum()),
                     "bbox": [float(x0), float(y0), float(w), float(h)], "area": float(w * h * 0.6)})
    dataset = {"images": [{"id": 1, "height": 640, "width": 640, "file_name": "crowd.jpg"}],
               "annotations": anns, "categories": real["categories"]}
    results = _round_trip((640, 640), kp, 1)
    ap = _keypoint_ap(dataset, results)
    print(f"\nround-trip keypoint AP on a crowded scene of {len(kp)} persons: {ap:.4f}")
    assert ap >= 0.90
