"""Crowded scenes composed from real and synthetic poses, and a grouping error breakdown.

Shapes: P persons, K keypoints (the spec's dataset order, 17 for COCO).

Scenes: ``compose_crowd`` pastes 6-10 poses from a pool into one 640 x 640
frame, rescaled to 240-400 px, mirrored at random, rotated by up to 15 degrees
and placed in the middle 60 % x 40 % of the frame, so every person overlaps
several others (``overlap_counts``). Pools: ``coco_pool`` (the real annotated
poses of a COCO keypoints file) and ``synthetic_pool`` (the annotated figures of
``keras_pose.data.synthetic`` scenes; no pixels are used). Perfect maps come
from the codec's encoder, so every error of a decode is the decoder's own.

``breakdown`` attributes each decoded keypoint to the ground-truth person whose
keypoint of the same type lies nearest (within ``tol`` px) and counts:

* ``merged``: decoded persons holding >= 3 keypoints of a second person;
* ``split``: persons whose keypoints are the majority of >= 2 decoded persons;
* ``stolen``: keypoints placed in a neighbour's decoded person (its owner is
  another ground-truth person) — limbs assigned to a neighbour;
* ``missing``: labelled keypoints absent from the person's own decoded person,
  ``no_peak`` of them without any peak there (the peak finder's share),
  ``missed_persons``: persons no decoded person is mostly made of.
"""
from __future__ import annotations

import json

import numpy as np

from keras_pose.skeleton import COCO


def coco_pool(coco_json, spec=COCO, min_labelled=8) -> np.ndarray:
    """(N, K, 3) real poses with >= min_labelled labelled keypoints."""
    with open(coco_json) as f:
        data = json.load(f)
    kps = [a["keypoints"] for a in data["annotations"]
           if not a.get("iscrowd") and a.get("num_keypoints", 0) >= min_labelled]
    return np.asarray(kps, np.float32).reshape(-1, spec.num_keypoints, 3)


def synthetic_pool(num_scenes=40, seed=0, min_labelled=8, spec=COCO) -> np.ndarray:
    """(N, K, 3) poses of the synthetic generator's annotated figures (default preset)."""
    from keras_pose.data.synthetic import make_scene
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(num_scenes):
        _, anns = make_scene(rng, (256, 256))
        out += [a["keypoints"] for a in anns
                if not a["iscrowd"] and a["num_keypoints"] >= min_labelled]
    return np.asarray(out, np.float32).reshape(-1, spec.num_keypoints, 3)


def compose_crowd(rng, pool, persons=(6, 10), size=(640, 640), height=(240, 400),
                  spread=(0.6, 0.4), spec=COCO) -> np.ndarray:
    """(P, K, 3) poses of one crowded scene; keypoints leaving the frame are unlabelled."""
    big_h, big_w = size
    n = int(rng.integers(persons[0], persons[1] + 1))
    out = np.zeros((n, spec.num_keypoints, 3), np.float32)
    for p in range(n):
        src = pool[rng.integers(len(pool))].copy()
        if rng.random() < 0.5:
            src = src[spec.flip_perm]
            src[:, 0] *= -1
        lab = src[:, 2] > 0
        xy = src[lab, :2]
        centre = (xy.min(0) + xy.max(0)) / 2
        extent = max(float(np.ptp(xy[:, 1])), float(np.ptp(xy[:, 0])), 1.0)
        scale = rng.uniform(*height) / extent
        ang = np.deg2rad(rng.uniform(-15, 15))
        rot = np.array([[np.cos(ang), -np.sin(ang)], [np.sin(ang), np.cos(ang)]])
        pos = np.array([big_w * (0.5 + spread[0] * (rng.random() - 0.5)),
                        big_h * (0.5 + spread[1] * (rng.random() - 0.5))])
        new = (src[:, :2] - centre) * scale @ rot.T + pos
        inside = (lab & (new[:, 0] >= 0) & (new[:, 0] <= big_w - 1)
                  & (new[:, 1] >= 0) & (new[:, 1] <= big_h - 1))
        out[p, :, :2] = np.where(inside[:, None], new, 0)
        out[p, :, 2] = np.where(inside, src[:, 2], 0)
    return out


def boxes(kp) -> np.ndarray:
    """(P, 4) x0, y0, x1, y1 of the labelled keypoints."""
    out = []
    for p in kp:
        xy = p[p[:, 2] > 0, :2]
        out.append(np.concatenate([xy.min(0), xy.max(0)]) if len(xy) else np.zeros(4))
    return np.asarray(out, np.float32)


def overlap_counts(kp) -> np.ndarray:
    """(P,) how many other persons' keypoint boxes each person's box intersects."""
    b = boxes(kp)
    lo = np.maximum(b[:, None, :2], b[None, :, :2])
    hi = np.minimum(b[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(hi - lo, 0, None), axis=-1)
    np.fill_diagonal(inter, 0)
    return (inter > 0).sum(1)


def coco_dataset(scenes, size=(640, 640), categories=None) -> dict:
    """COCO ground truth for a list of (P, K, 3) scenes (image ids 1..)."""
    images, anns = [], []
    for i, kp in enumerate(scenes, 1):
        images.append({"id": i, "height": size[0], "width": size[1], "file_name": f"crowd_{i}.jpg"})
        for p, (x0, y0, x1, y1) in zip(kp, boxes(kp)):
            w, h = float(x1 - x0), float(y1 - y0)
            anns.append({"id": len(anns) + 1, "image_id": i, "category_id": 1, "iscrowd": 0,
                         "keypoints": p.reshape(-1).tolist(), "num_keypoints": int((p[:, 2] > 0).sum()),
                         "bbox": [float(x0), float(y0), w, h], "area": w * h * 0.6})
    cats = categories or [{"id": 1, "name": "person", "supercategory": "person"}]
    return {"images": images, "annotations": anns, "categories": cats}


def keypoint_ap(dataset: dict, results: list) -> float:
    """pycocotools keypoint AP of ``results`` against ``dataset`` (quiet)."""
    import contextlib
    import copy
    import io

    from pycocotools.coco import COCO as CocoApi
    from pycocotools.cocoeval import COCOeval
    if not results:
        return 0.0
    with contextlib.redirect_stdout(io.StringIO()):
        gt = CocoApi()
        gt.dataset = copy.deepcopy(dataset)
        gt.createIndex()
        ev = COCOeval(gt, gt.loadRes(results), "keypoints")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return float(ev.stats[0])


def breakdown(gt, pred, peaks_xy=None, tol=4.0) -> dict:
    """Grouping errors of decoded persons against ground truth (see the module doc).

    Args:
        gt: (G, K, 3) ground truth; pred: (P, K, 3) decoded (score 0 = missing).
        peaks_xy: optional list over K of (n, 2) detected peak positions (for ``no_peak``).
    """
    g_lab = gt[..., 2] > 0
    k = gt.shape[1]
    # owner[p, j]: the gt person of decoded keypoint (p, j), -1 none/unmatched, -2 absent
    owner = np.full(pred.shape[:2], -2, np.int64)
    for p in range(len(pred)):
        for j in range(k):
            if pred[p, j, 2] <= 0:
                continue
            d = np.linalg.norm(gt[:, j, :2] - pred[p, j, :2], axis=1)
            d[~g_lab[:, j]] = np.inf
            owner[p, j] = int(d.argmin()) if d.size and d.min() <= tol else -1
    out = {"persons": int(len(gt)), "decoded": int(len(pred)), "merged": 0, "split": 0,
           "stolen": 0, "missing": 0, "no_peak": 0, "missed_persons": 0, "spurious": 0}
    major = np.full(len(pred), -1)
    for p in range(len(pred)):
        got = owner[p][owner[p] >= 0]
        if got.size == 0:
            out["spurious"] += 1
            continue
        ids, cnt = np.unique(got, return_counts=True)
        major[p] = ids[cnt.argmax()]
        out["stolen"] += int(got.size - cnt.max())
        out["merged"] += int((np.sort(cnt)[:-1] >= 3).any())
    for g in range(len(gt)):
        mine = np.flatnonzero(major == g)
        if mine.size == 0:
            out["missed_persons"] += 1
        strong = [p for p in mine if (owner[p] == g).sum() >= 2]
        out["split"] += int(len(strong) >= 2)
        best = max(mine, key=lambda p: (owner[p] == g).sum()) if mine.size else None
        for j in np.flatnonzero(g_lab[g]):
            if best is not None and owner[best, j] == g:
                continue
            out["missing"] += 1
            if peaks_xy is not None:
                pk = peaks_xy[j]
                if len(pk) == 0 or np.linalg.norm(pk - gt[g, j, :2], axis=1).min() > tol:
                    out["no_peak"] += 1
    return out
