"""Top-down predictor: image + person boxes -> Poses in original image pixels.

Shapes: P boxes, K keypoints, crops (P, H, W, 3) float32 RGB 0..255, heatmaps
(P, h, w, K).

Pipeline (``docs/method_top_down.md`` §5): box -> UDP crop (``geometry``) ->
network -> optional flip test (mirrored crops, ``HeatmapCodec.fuse_flip``) ->
``HeatmapCodec.decode`` (DARK) -> inverse crop affine -> rescoring (box score x
mean keypoint confidence above 0.2) -> OKS-NMS (``codecs.postprocess``). This is
the one top-down path: the Keras model, the LiteRT interpreter and COCO
evaluation all run through ``TopDownPredictor``.

The module does not import TensorFlow: the network is a ``KerasNetwork`` /
``LiteRTNetwork`` (``inference.networks``), a Keras model (wrapped in a
``KerasNetwork``) or a plain callable.
"""
from __future__ import annotations

import collections
import dataclasses
import inspect
import time
from typing import Callable, Iterable, Iterator, List, Optional, Tuple

import numpy as np

from keras_pose.codecs.heatmap import HeatmapCodec
from keras_pose.codecs.postprocess import OKS_NMS_THRESHOLD, oks_nms, rescore
from keras_pose.geometry import (apply_affine, box_problem, box_to_center_scale, crop_affine,
                                 invert_affine, mirror_affine, warp_crop)
from keras_pose.inference.networks import as_network
from keras_pose.io import load_image
from keras_pose.structures import Poses

__all__ = ["CropRecord", "TopDownPredictor", "as_predict_fn", "iter_crops", "predict_crops"]


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


def as_predict_fn(model_or_fn, output=None) -> Callable:
    """A function (images (B, H, W, 3) float32[, records]) -> heatmaps (B, h, w, K).

    A network (``run``) or a Keras model (wrapped in a ``KerasNetwork``; ``output``
    names its decoded output when it has several). A plain callable taking two
    positional arguments also receives the batch's CropRecords (useful for
    oracles and caches).
    """
    if hasattr(model_or_fn, "run") or hasattr(model_or_fn, "predict_on_batch"):
        net = as_network(model_or_fn, output)
        return lambda images: net.run(images)
    if not callable(model_or_fn):
        raise ValueError(f"expected a network, a Keras model or a callable, got "
                         f"{type(model_or_fn).__name__}")
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
               padding: float = 1.25, timing=None) -> Iterator[Tuple[CropRecord, np.ndarray]]:
    """(record, crop (H, W, 3) float32) for every usable box of one RGB image.

    Callers filter bad boxes first (``box_problem``); here they raise.
    """
    H, W = codec.input_size
    img = np.asarray(image)
    for i, (box, score) in enumerate(zip(boxes, box_scores)):
        t = time.perf_counter()
        center, scale = box_to_center_scale(box, W / H, padding)
        m = crop_affine(center, scale, 0.0, (H, W))
        crop = warp_crop(img, m, (H, W)).astype(np.float32)
        if timing is not None:
            timing["preprocess"] = timing.get("preprocess", 0.0) + time.perf_counter() - t
        yield CropRecord(int(image_id), i, np.asarray(box, np.float64), float(score), m), crop


def predict_crops(predict_fn, codec: HeatmapCodec,
                  crops: Iterable[Tuple[CropRecord, np.ndarray]], batch_size: int = 32,
                  flip: bool = True, timing=None) -> Iterator[Tuple[CropRecord, np.ndarray]]:
    """Run the model over crops in batches; yield (record, (K, 3) keypoints in image pixels).

    With ``flip`` each batch is also run mirrored and the maps are fused
    (§5.2). Keypoint scores are the decoded heatmap maxima. ``timing`` (a dict)
    accumulates seconds under "network" and "decode".
    """
    timing = {} if timing is None else timing

    def tick(stage, t0):
        t1 = time.perf_counter()
        timing[stage] = timing.get(stage, 0.0) + t1 - t0
        return t1
    fn = as_predict_fn(predict_fn)
    wants = _wants_records(fn)
    W = codec.input_size[1]
    mirror = mirror_affine(W)

    def run(batch):
        t = time.perf_counter()
        recs = [r for r, _ in batch]
        imgs = np.stack([c for _, c in batch]).astype(np.float32)
        maps = _call(fn, imgs, recs, wants)
        if flip:
            frecs = [dataclasses.replace(r, matrix=mirror @ np.vstack([r.matrix, [0, 0, 1]]),
                                         flipped=True) for r in recs]
            fmaps = _call(fn, np.ascontiguousarray(imgs[:, :, ::-1]), frecs, wants)
        t = tick("network", t)
        if flip:
            maps = codec.fuse_flip(maps, fmaps)
        kps = codec.decode(maps)                                  # (B, K, 3) crop pixels
        out = []
        for r, kp in zip(recs, kps):
            k = kp.copy()
            k[:, :2] = apply_affine(kp[:, :2], invert_affine(r.matrix))
            out.append((r, k))
        tick("decode", t)
        yield from out

    batch: List = []
    for item in crops:
        batch.append(item)
        if len(batch) == batch_size:
            yield from run(batch)
            batch = []
    if batch:
        yield from run(batch)


class TopDownPredictor:
    """Top-down inference over a network: crops, flip test, decode, rescoring, OKS-NMS.

    Args:
        network: a ``KerasNetwork``/``LiteRTNetwork``, a Keras model (inference
            form: FasterPose's heatmaps in [0, 1], SimpleBaseline's linear maps)
            or a callable, see ``as_predict_fn``.
        codec: the HeatmapCodec the model was trained with (crop and map sizes).
        flip: average with the mirrored crops (flip test).
        batch_size: crops per network call.
        oks_nms_threshold: OKS-NMS threshold over the persons (None: off).
        padding: box enlargement before cropping (1.25, SimpleBaseline).
        output: the decoded output of a multi-output Keras model (a RunDescriptor
            or its ``output`` dict).

    After each ``predict``, ``last_timing`` holds the seconds spent in
    preprocess (image reading and crops), network and decode (flip fusion,
    decoding, rescoring and NMS).
    """

    def __init__(self, network, codec: HeatmapCodec, flip: bool = True, batch_size: int = 32,
                 oks_nms_threshold: Optional[float] = OKS_NMS_THRESHOLD, padding: float = 1.25,
                 output=None):
        if not isinstance(codec, HeatmapCodec):
            raise NotImplementedError(f"TopDownPredictor decodes heatmaps with a HeatmapCodec, got "
                                      f"{type(codec).__name__}: bottom-up models need "
                                      "keras_pose.inference.PosePredictor")
        self.predict_fn = as_predict_fn(network, output)
        self.codec = codec
        self.spec = codec.spec
        self.flip = bool(flip)
        self.batch_size = max(1, int(batch_size))
        self.oks_nms_threshold = oks_nms_threshold
        self.padding = float(padding)
        self.last_timing = {}

    # ----------------------------------------------------------- one image
    def predict(self, image, boxes, box_scores=None, image_id: int = 0):
        """Poses for ``boxes`` (P, 4) COCO [x, y, w, h] in ``image``, in image pixels.

        Args:
            image: a path or an RGB (H0, W0, 3) array (anything ``load_image``
                takes), or a list of them; then ``boxes`` (and ``box_scores``)
                are lists with one entry per image.
            box_scores: (P,) detector scores (default 1).
            image_id: only labels the CropRecords a two-argument callable sees.

        Bad boxes (zero size, NaN, entirely outside) are skipped. Person scores
        are rescored (box score x mean keypoint confidence above 0.2).

        Returns:
            ``Poses`` for one image, a list for a list.
        """
        if isinstance(image, (list, tuple)):
            if boxes is None or len(boxes) != len(image):
                raise ValueError("a list of images needs a list of boxes (one (P, 4) array "
                                 "per image)")
            scores = box_scores if box_scores is not None else [None] * len(image)
            items = [(i, im, b, s) for i, (im, b, s) in enumerate(zip(image, boxes, scores))]
            return [p for _, p in self.predict_images(items)]
        if boxes is None:
            raise ValueError("a top-down model needs person boxes: predict(image, boxes)")
        return next(iter(self.predict_images([(image_id, image, boxes, box_scores)])))[1]

    __call__ = predict

    # ------------------------------------------------------- many images
    def _usable(self, image, boxes, box_scores):
        img = load_image(image)
        try:
            boxes = np.asarray(boxes, np.float64)
        except (TypeError, ValueError):
            raise ValueError(f"boxes must be (N, 4) COCO [x, y, w, h], got {boxes!r}") from None
        if boxes.size and (boxes.ndim != 2 or boxes.shape[1] < 4):
            raise ValueError(f"boxes must be (N, 4) COCO [x, y, w, h], got shape {boxes.shape}")
        boxes = boxes.reshape(-1, boxes.shape[-1] if boxes.size else 4)[:, :4]
        scores = np.ones(len(boxes)) if box_scores is None else \
            np.asarray(box_scores, np.float64).reshape(-1)
        if len(scores) != len(boxes):
            raise ValueError(f"{len(boxes)} boxes but {len(scores)} box scores")
        keep = [i for i, b in enumerate(boxes)
                if box_problem(b, img.shape[:2]) is None and np.isfinite(scores[i])]
        return img, boxes[keep], scores[keep]

    def predict_images(self, items: Iterable) -> Iterator[Tuple[int, Poses]]:
        """(image_id, Poses) for each (image_id, image, boxes, box_scores) of ``items``.

        Crops of consecutive images share network batches (evaluation over a
        data set); each image's poses are rescored and OKS-NMSed on their own.
        """
        self.last_timing = {"preprocess": 0.0, "network": 0.0, "decode": 0.0}
        queue = collections.deque()  # [image_id, boxes, box_scores, results] in input order

        def crops():
            for image_id, image, boxes, scores in items:
                t = time.perf_counter()
                img, boxes, scores = self._usable(image, boxes, scores)
                entry = [image_id, boxes, scores, []]
                queue.append(entry)
                self.last_timing["preprocess"] += time.perf_counter() - t
                yield from iter_crops(img, image_id, boxes, scores, self.codec, self.padding,
                                      timing=self.last_timing)

        def finished():
            while queue and len(queue[0][3]) == len(queue[0][1]):
                image_id, boxes, scores, res = queue.popleft()
                t = time.perf_counter()
                poses = self._finish(boxes, scores, res)
                self.last_timing["decode"] += time.perf_counter() - t
                yield image_id, poses

        for rec, kp in predict_crops(self.predict_fn, self.codec, crops(), self.batch_size,
                                     self.flip, timing=self.last_timing):
            yield from finished()  # images with no usable box ahead of this crop's
            queue[0][3].append(kp)
            yield from finished()
        yield from finished()

    def _finish(self, boxes, scores, kps) -> Poses:
        if not kps:
            return Poses.empty(self.codec.num_keypoints)
        kps = np.stack(kps).astype(np.float32)
        poses = Poses(kps, rescore(kps, scores))
        if self.oks_nms_threshold is not None:
            areas = boxes[:, 2] * boxes[:, 3]
            poses = poses.select(oks_nms(kps, poses.scores, areas, self.spec.sigmas,
                                         self.oks_nms_threshold))
        return poses
