"""Top-down COCO evaluation from person boxes (GT boxes or a detections file).

Shapes: P persons in an image, K keypoints.

``docs/method_top_down.md`` §5.3 (SimpleBaseline/HRNet protocol): keep boxes
with score above a threshold (0.0), then the ``TopDownPredictor`` (UDP crops,
flip test, DARK decoding, rescoring, OKS-NMS at 0.9 per image) over every
image, write COCO results and score them with pycocotools (``coco_eval``).
This module only reads boxes and images and drives the predictor.

Imports without TensorFlow.
"""
from __future__ import annotations

import json
import logging
import math
import os
from typing import Optional

import numpy as np

from keras_pose.codecs.heatmap import HeatmapCodec
from keras_pose.codecs.postprocess import OKS_NMS_THRESHOLD
from keras_pose.evaluation.coco_eval import evaluate_keypoints, load_coco_gt, write_results
from keras_pose.geometry import box_problem
from keras_pose.inference.topdown_predictor import TopDownPredictor
from keras_pose.io import ImageReadError, load_image

log = logging.getLogger(__name__)

__all__ = ["evaluate_topdown", "load_boxes"]


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


def _images(gt, images_dir, boxes_by_image, counts, progress=False):
    """(image_id, RGB image, boxes, scores) for every image with boxes, each read once.

    An unreadable image is skipped with a warning and counted in
    ``counts["bad_image"]`` (its boxes then yield no poses).
    """
    ids = [i for i in sorted(boxes_by_image) if boxes_by_image[i]]
    if progress:
        from tqdm import tqdm
        ids = tqdm(ids, desc="top-down eval", unit="img")
    for iid in ids:
        try:
            image = load_image(os.path.join(os.fspath(images_dir), gt.imgs[iid]["file_name"]))
        except ImageReadError as e:
            log.warning("skipping image %s: %s", iid, e)
            counts["bad_image"] = counts.get("bad_image", 0) + 1
            continue
        yield (iid, image, [b for b, _ in boxes_by_image[iid]],
               [s for _, s in boxes_by_image[iid]])


def evaluate_topdown(model, codec: HeatmapCodec, annotations, images_dir,
                     boxes="gt", score_threshold: float = 0.0, batch_size: int = 32,
                     flip: bool = True, max_images: Optional[int] = None,
                     oks_nms_threshold: Optional[float] = OKS_NMS_THRESHOLD, results_path=None,
                     progress: bool = True):
    """COCO keypoint AP of a top-down model from person boxes.

    Args:
        model: a ready ``TopDownPredictor``, or what one runs: a network, a Keras
            model (inference form) or a callable ``fn(images)`` /
            ``fn(images, records)`` -> (B, h, w, K) heatmaps.
        codec: the HeatmapCodec of the model.
        annotations: COCO person_keypoints JSON (path, dict or COCO object).
        images_dir: folder of the images.
        boxes: "gt" or the path of a detections JSON (COCO results format).
        score_threshold: drop detections scoring below this.
        max_images: evaluate only the first N images (sorted ids).
        batch_size, flip, oks_nms_threshold: ``TopDownPredictor`` options (ignored
            for a ready predictor).
        results_path: optionally write the results JSON there.

    Returns:
        (results, stats): COCO results dicts, and {"AP", "AP50", ..., "ARl",
        "num_images", "num_results", "boxes", "nan_score", "below_threshold",
        "bad_box", "not_person", "unknown_image", "bad_image"} (+ "message"
        when nothing could be evaluated).
    """
    predictor = model if isinstance(model, TopDownPredictor) else TopDownPredictor(
        model, codec, flip=flip, batch_size=batch_size, oks_nms_threshold=oks_nms_threshold)
    gt = load_coco_gt(annotations)
    image_ids = sorted(gt.getImgIds())
    if max_images is not None:
        image_ids = image_ids[:int(max_images)]
    boxes_by_image, counts = load_boxes(boxes, gt, image_ids, score_threshold)
    counts["bad_image"] = 0
    results = []
    for iid, poses in predictor.predict_images(_images(gt, images_dir, boxes_by_image, counts,
                                                        progress)):
        results.extend(poses.to_coco(iid))
    sigmas = predictor.codec.spec.sigmas
    stats = dict(evaluate_keypoints(results, gt, image_ids=image_ids, sigmas=sigmas))
    stats.update(counts, num_images=len(image_ids), num_results=len(results))
    if not results:
        stats["message"] = (f"no person boxes survived (boxes={boxes!r}, skipped: "
                            f"{ {k: v for k, v in counts.items() if k != 'boxes' and v} }); AP is 0")
        log.warning(stats["message"])
    if results_path is not None:
        write_results(results, results_path)
    return results, stats
