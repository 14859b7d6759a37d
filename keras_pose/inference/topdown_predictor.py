"""Top-down predictor: image + person boxes -> Poses in original image pixels.

Shapes: P boxes, K keypoints, crops (P, H, W, 3) float32 RGB 0..255, heatmaps
(P, h, w, K).

Pipeline (``docs/method_top_down.md`` §5): box -> UDP crop (``geometry``) -> model ->
optional flip test (mirrored crops, ``HeatmapCodec.fuse_flip``) ->
``HeatmapCodec.decode`` (DARK) -> inverse crop affine -> rescoring
(box score x mean keypoint confidence above 0.2) -> optional OKS-NMS.

The module does not import TensorFlow: the model is anything with
``predict_on_batch`` (a Keras model: FasterPose's inference model ending in a
sigmoid, or SimpleBaseline's linear head) or a plain callable.
"""
from __future__ import annotations

import dataclasses
import inspect
from typing import Callable, Iterable, Iterator, List, Optional, Tuple

import numpy as np

from keras_pose.codecs.heatmap import HeatmapCodec
from keras_pose.geometry import (apply_affine, box_problem, box_to_center_scale, crop_affine,
                                 invert_affine, mirror_affine, warp_crop)
from keras_pose.structures import Poses

KEYPOINT_SCORE_THRESHOLD = 0.2   # SimpleBaseline's in_vis_thre (§5.3)


@dataclasses.dataclass
class CropRecord:
    """Where one crop came from. matrix: (2, 3) image pixels -> crop pixels
    (including the mirror when ``flipped``); box: [x, y, w, h]; index: position
    of the box in its image's list."""

    image_id: int
    index: int
    box: np.ndarray
    box_score: float
    matrix: np.ndarray
    flipped: bool = False


def as_predict_fn(model_or_fn) -> Callable:
    """A function (images (B, H, W, 3) float32[, records]) -> heatmaps (B, h, w, K).

    Keras models go through ``predict_on_batch`` (one compiled graph, no
    per-call retracing); a model with several outputs contributes its last one.
    A plain callable taking two positional arguments also receives the batch's
    CropRecords (useful for oracles and caches).
    """
    if hasattr(model_or_fn, "predict_on_batch"):
        model = model_or_fn

        def fn(images):
            out = model.predict_on_batch(images)
            if isinstance(out, dict):
                out = list(out.values())
            if isinstance(out, (list, tuple)):
                out = out[-1]
            return np.asarray(out)
        return fn
    if not callable(model_or_fn):
        raise ValueError(f"expected a Keras model or a callable, got {type(model_or_fn).__name__}")
    return model_or_fn


def _wants_records(fn) -> bool:
    try:
        params = [p for p in inspect.signature(fn).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    except (TypeError, ValueError):
        return False
    return len(params) >= 2


def _call(fn, images, records, wants):
    out = fn(images, records) if wants else fn(images)
    out = np.asarray(out, np.float32)
    if out.ndim != 4 or out.shape[0] != images.shape[0]:
        raise ValueError(f"the model returned shape {out.shape} for {images.shape[0]} crops; "
                         "expected (B, h, w, K) heatmaps")
    return out


def iter_crops(image, image_id: int, boxes, box_scores, codec: HeatmapCodec,
               padding: float = 1.25) -> Iterator[Tuple[CropRecord, np.ndarray]]:
    """(record, crop (H, W, 3) float32) for every usable box of one RGB image.

    Callers filter bad boxes first (``box_problem``); here they raise.
    """
    H, W = codec.input_size
    img = np.asarray(image)
    for i, (box, score) in enumerate(zip(boxes, box_scores)):
        center, scale = box_to_center_scale(box, W / H, padding)
        m = crop_affine(center, scale, 0.0, (H, W))
        crop = warp_crop(img, m, (H, W)).astype(np.float32)
        yield CropRecord(int(image_id), i, np.asarray(box, np.float64), float(score), m), crop


def predict_crops(predict_fn, codec: HeatmapCodec,
                  crops: Iterable[Tuple[CropRecord, np.ndarray]], batch_size: int = 32,
                  flip: bool = True) -> Iterator[Tuple[CropRecord, np.ndarray]]:
    """Run the model over crops in batches; yield (record, (K, 3) keypoints in image pixels).

    With ``flip`` each batch is also run mirrored and the maps are fused
    (§5.2). Keypoint scores are the decoded heatmap maxima.
    """
    fn = as_predict_fn(predict_fn)
    wants = _wants_records(fn)
    W = codec.input_size[1]
    mirror = mirror_affine(W)

    def run(batch):
        recs = [r for r, _ in batch]
        imgs = np.stack([c for _, c in batch]).astype(np.float32)
        maps = _call(fn, imgs, recs, wants)
        if flip:
            frecs = [dataclasses.replace(r, matrix=mirror @ np.vstack([r.matrix, [0, 0, 1]]),
                                         flipped=True) for r in recs]
            fmaps = _call(fn, np.ascontiguousarray(imgs[:, :, ::-1]), frecs, wants)
            maps = codec.fuse_flip(maps, fmaps)
        kps = codec.decode(maps)                                  # (B, K, 3) crop pixels
        for r, kp in zip(recs, kps):
            out = kp.copy()
            out[:, :2] = apply_affine(kp[:, :2], invert_affine(r.matrix))
            yield r, out

    batch: List = []
    for item in crops:
        batch.append(item)
        if len(batch) == batch_size:
            yield from run(batch)
            batch = []
    if batch:
        yield from run(batch)


def rescore(keypoints, box_scores, threshold: float = KEYPOINT_SCORE_THRESHOLD) -> np.ndarray:
    """(P,) person scores = box score x mean of keypoint confidences above ``threshold``
    (0 when none is above; SimpleBaseline/HRNet, §5.3)."""
    conf = np.asarray(keypoints, np.float64)[..., 2]
    above = conf > threshold
    n = above.sum(axis=-1)
    mean = np.where(n > 0, (conf * above).sum(axis=-1) / np.maximum(n, 1), 0.0)
    return (mean * np.asarray(box_scores, np.float64)).astype(np.float32)


class TopDownPredictor:
    """Keras (or any callable) top-down inference on one image.

    Args:
        model: a Keras model (inference form: heatmaps in [0, 1] for FasterPose)
            or a callable, see ``as_predict_fn``.
        codec: the HeatmapCodec the model was trained with.
        flip: average with the mirrored crops (flip test).
        batch_size: crops per model call.
        oks_nms_threshold: OKS-NMS threshold over the persons (None: off).
    """

    def __init__(self, model, codec: HeatmapCodec, flip: bool = True, batch_size: int = 32,
                 oks_nms_threshold: Optional[float] = 0.9, padding: float = 1.25):
        self.predict_fn = as_predict_fn(model)
        self.codec = codec
        self.flip = flip
        self.batch_size = int(batch_size)
        self.oks_nms_threshold = oks_nms_threshold
        self.padding = padding

    def predict(self, image, boxes, box_scores=None, image_id: int = 0) -> Poses:
        """Poses for ``boxes`` (P, 4) [x, y, w, h] in ``image`` (H0, W0, 3) RGB.

        Bad boxes (zero size, NaN, entirely outside) are skipped. Person scores
        are rescored (box score x mean keypoint confidence above 0.2).
        ``image_id`` only labels the CropRecords a two-argument callable sees.
        """
        from keras_pose.evaluation.topdown import oks_nms

        img = np.asarray(image)
        boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
        box_scores = np.ones(len(boxes)) if box_scores is None else np.asarray(box_scores, np.float64)
        keep = [i for i, b in enumerate(boxes)
                if box_problem(b, img.shape[:2]) is None and np.isfinite(box_scores[i])]
        K = self.codec.num_keypoints
        if not keep:
            return Poses.empty(K)
        crops = iter_crops(img, image_id, boxes[keep], box_scores[keep], self.codec, self.padding)
        out = list(predict_crops(self.predict_fn, self.codec, crops, self.batch_size, self.flip))
        kps = np.stack([kp for _, kp in out])
        scores = rescore(kps, [r.box_score for r, _ in out])
        poses = Poses(kps, scores)
        if self.oks_nms_threshold is not None:
            areas = boxes[keep, 2] * boxes[keep, 3]
            poses = poses.select(oks_nms(kps, scores, areas, self.codec.spec.sigmas,
                                         self.oks_nms_threshold))
        return poses
