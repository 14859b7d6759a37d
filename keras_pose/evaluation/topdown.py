"""Top-down COCO evaluation from person boxes (GT boxes or a detections file).

Shapes: P persons in an image, K keypoints.

``docs/method_top_down.md`` §5.3 (SimpleBaseline/HRNet protocol): keep boxes with score
above a threshold (0.0), crop each (UDP), predict in batches with the flip
test, decode (DARK), map back through the crop inverse, rescore each pose as
box score x mean of its keypoint confidences above 0.2, OKS-NMS per image at
0.9, write COCO results and score them with pycocotools (``coco_eval``).

The OKS used by the NMS below is ordinary post-processing; AP itself comes from
pycocotools' COCOeval only. Imports without TensorFlow.
"""
from __future__ import annotations

import json
import logging
import math
import os
from typing import Optional

import numpy as np

from keras_pose.codecs.heatmap import HeatmapCodec
from keras_pose.geometry import box_problem
from keras_pose.evaluation.coco_eval import evaluate_keypoints, load_coco_gt, write_results
from keras_pose.inference.topdown_predictor import (KEYPOINT_SCORE_THRESHOLD, iter_crops,
                                                    predict_crops, rescore)
from keras_pose.structures import Poses

log = logging.getLogger(__name__)

__all__ = ["evaluate_topdown", "load_boxes", "oks_nms", "collect_crops", "poses_to_results"]


def oks_nms(keypoints, scores, areas, sigmas, threshold: float = 0.9) -> np.ndarray:
    """Greedy non-maximum suppression of poses by OKS; returns kept indices (best first).

    Args:
        keypoints: (P, K, 3) [x, y, score] in image pixels.
        scores: (P,) person scores; areas: (P,) box areas (pixels^2).
        sigmas: (K,) COCO OKS sigmas; threshold: suppress OKS > threshold.

    OKS between poses a, b (COCO's formula, as in SimpleBaseline's oks_nms):
    mean_k exp(-d_k^2 / (2 * s * (2 sigma_k)^2)) with s the mean of the areas.
    """
    kp = np.asarray(keypoints, np.float64)
    sc = np.asarray(scores, np.float64).reshape(-1)
    ar = np.asarray(areas, np.float64).reshape(-1)
    if kp.shape[0] == 0:
        return np.zeros((0,), np.int64)
    var = (2.0 * np.asarray(sigmas, np.float64)) ** 2                     # (K,)
    order = np.argsort(-sc, kind="stable")
    keep = []
    while order.size:
        i, rest = order[0], order[1:]
        keep.append(int(i))
        if not rest.size:
            break
        d2 = ((kp[rest, :, :2] - kp[i, None, :, :2]) ** 2).sum(-1)         # (R, K)
        s = (ar[rest] + ar[i]) / 2.0 + np.spacing(1)
        oks = np.exp(-d2 / var[None, :] / s[:, None] / 2.0).mean(axis=1)
        order = rest[oks <= threshold]
    return np.asarray(keep, np.int64)


def load_boxes(boxes, gt, image_ids, score_threshold: float = 0.0):
    """Person boxes per image and counts of what was skipped.

    Args:
        boxes: "gt" (non-crowd annotations with keypoints, score 1) or the path
            of a COCO results-format detections JSON (image_id, bbox, score).
        gt: pycocotools COCO of the annotations; image_ids: images to keep.

    Returns:
        ({image_id: [(box (4,), score), ...]}, counts) where counts has
        "boxes" (kept) and the skipped "nan_score", "below_threshold",
        "bad_box", "not_person", "unknown_image".
    """
    counts = {"boxes": 0, "nan_score": 0, "below_threshold": 0, "bad_box": 0,
              "not_person": 0, "unknown_image": 0}
    wanted = set(int(i) for i in image_ids)
    out = {i: [] for i in wanted}
    if isinstance(boxes, str) and boxes == "gt":
        entries = [{"image_id": a["image_id"], "bbox": a["bbox"], "score": 1.0}
                   for a in gt.dataset.get("annotations", [])
                   if not a.get("iscrowd", 0) and a.get("num_keypoints", 0) > 0]
    else:
        path = os.fspath(boxes)
        try:
            with open(path, encoding="utf-8") as f:
                entries = json.load(f)
        except (OSError, json.JSONDecodeError) as e:
            raise ValueError(f"cannot read detections file {path}: {e}") from None
        if not isinstance(entries, list):
            raise ValueError(f"detections file {path}: expected a JSON list of "
                             f"{{image_id, bbox, score}} dicts, got {type(entries).__name__}")
        if not entries:
            log.warning("detections file %s is empty: no person boxes, AP will be 0", path)
    for e in entries:
        if not isinstance(e, dict) or "image_id" not in e or "bbox" not in e:
            counts["bad_box"] += 1
            continue
        if int(e.get("category_id", 1)) != 1:
            counts["not_person"] += 1
            continue
        iid = int(e["image_id"])
        if iid not in wanted:
            counts["unknown_image"] += 1
            continue
        try:
            score = float(e.get("score", 1.0))
        except (TypeError, ValueError):
            score = math.nan
        if not math.isfinite(score):
            counts["nan_score"] += 1
            continue
        if score < score_threshold:
            counts["below_threshold"] += 1
            continue
        img = gt.imgs[iid]
        if box_problem(e["bbox"], (img["height"], img["width"])) is not None:
            counts["bad_box"] += 1
            continue
        out[iid].append((np.asarray(e["bbox"], np.float64), score))
        counts["boxes"] += 1
    return out, counts


def collect_crops(gt, images_dir, boxes_by_image, codec: HeatmapCodec, progress: bool = False,
                  counts: Optional[dict] = None):
    """Generator of (CropRecord, crop) over all images, reading each image once (RGB).

    An unreadable image is skipped with a warning and counted in
    ``counts["bad_image"]`` (its boxes then yield no poses).
    """
    from keras_pose.io import ImageReadError, load_image

    ids = [i for i in sorted(boxes_by_image) if boxes_by_image[i]]
    if progress:
        from tqdm import tqdm
        ids = tqdm(ids, desc="top-down eval", unit="img")
    for iid in ids:
        try:
            image = load_image(os.path.join(os.fspath(images_dir), gt.imgs[iid]["file_name"]))
        except ImageReadError as e:
            log.warning("skipping image %s: %s", iid, e)
            if counts is not None:
                counts["bad_image"] = counts.get("bad_image", 0) + 1
            continue
        bx = [b for b, _ in boxes_by_image[iid]]
        sc = [s for _, s in boxes_by_image[iid]]
        yield from iter_crops(image, iid, bx, sc, codec)


def poses_to_results(pairs, sigmas, oks_threshold: Optional[float] = 0.9,
                     keypoint_threshold: float = KEYPOINT_SCORE_THRESHOLD) -> list:
    """(CropRecord, (K, 3) image keypoints) pairs -> rescored, OKS-NMSed COCO results."""
    by_image = {}
    for rec, kp in pairs:
        by_image.setdefault(rec.image_id, []).append((rec, kp))
    results = []
    for iid in sorted(by_image):
        recs = [r for r, _ in by_image[iid]]
        kps = np.stack([k for _, k in by_image[iid]])
        scores = rescore(kps, [r.box_score for r in recs], keypoint_threshold)
        poses = Poses(kps, scores)
        if oks_threshold is not None:
            areas = np.array([r.box[2] * r.box[3] for r in recs])
            poses = poses.select(oks_nms(kps, scores, areas, sigmas, oks_threshold))
        results.extend(poses.to_coco(iid))
    return results


def evaluate_topdown(model_or_predict_fn, codec: HeatmapCodec, annotations, images_dir,
                     boxes="gt", score_threshold: float = 0.0, batch_size: int = 32,
                     flip: bool = True, max_images: Optional[int] = None,
                     oks_nms_threshold: Optional[float] = 0.9, results_path=None,
                     progress: bool = True):
    """COCO keypoint AP of a top-down model from person boxes.

    Args:
        model_or_predict_fn: a Keras model (inference form) or a callable
            ``fn(images)`` / ``fn(images, records)`` -> (B, h, w, K) heatmaps.
        codec: the HeatmapCodec of the model.
        annotations: COCO person_keypoints JSON (path, dict or COCO object).
        images_dir: folder of the images.
        boxes: "gt" or the path of a detections JSON (COCO results format).
        score_threshold: drop detections scoring below this.
        max_images: evaluate only the first N images (sorted ids).
        results_path: optionally write the results JSON there.

    Returns:
        (results, stats): COCO results dicts, and {"AP", "AP50", ..., "ARl",
        "num_images", "num_results", "boxes", "nan_score", "below_threshold",
        "bad_box", "not_person", "unknown_image", "bad_image"} (+ "message"
        when nothing could be evaluated).
    """
    gt = load_coco_gt(annotations)
    image_ids = sorted(gt.getImgIds())
    if max_images is not None:
        image_ids = image_ids[:int(max_images)]
    boxes_by_image, counts = load_boxes(boxes, gt, image_ids, score_threshold)
    counts["bad_image"] = 0
    crops = collect_crops(gt, images_dir, boxes_by_image, codec, progress, counts)
    pairs = predict_crops(model_or_predict_fn, codec, crops, batch_size, flip)
    results = poses_to_results(pairs, codec.spec.sigmas, oks_nms_threshold)
    stats = dict(evaluate_keypoints(results, gt, image_ids=image_ids, sigmas=codec.spec.sigmas))
    stats.update(counts, num_images=len(image_ids), num_results=len(results))
    if not results:
        stats["message"] = (f"no person boxes survived (boxes={boxes!r}, skipped: "
                            f"{ {k: v for k, v in counts.items() if k != 'boxes' and v} }); AP is 0")
        log.warning(stats["message"])
    if results_path is not None:
        write_results(results, results_path)
    return results, stats
