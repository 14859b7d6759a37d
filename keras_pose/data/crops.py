"""Top-down person crops: box -> centre/scale -> UDP affine -> warped crop.

Shapes: K keypoints; crops are (H, W, 3) with out_size = (H, W); affine
matrices are (2, 3) and map ORIGINAL image pixels -> crop pixels (the house
transform record; go back with ``structures.invert_affine``).

Conventions (``docs/method_top_down.md`` §2.4):
* Boxes are COCO [x, y, w, h] in pixels. The box is widened or heightened to the
  crop's aspect ratio W / H and enlarged by ``padding`` (1.25, SimpleBaseline).
  Scale is kept in PIXELS (no pixel_std 200): ``scale = (box_w, box_h)``.
* UDP (Huang et al., CVPR 2020): the crop box extent maps onto (out_size - 1),
  so the box centre lands exactly on ((W - 1) / 2, (H - 1) / 2) and a
  horizontal mirror of the crop is x -> (W - 1) - x, exact on the pixel grid.
* Training augmentation: rotation +-40 deg with probability 0.6, scale +-30 %,
  horizontal flip with ``spec.flip_perm`` (SimpleBaseline's COCO recipe).

NumPy + OpenCV only: imports without TensorFlow.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Optional, Sequence, Tuple

import cv2
import numpy as np

from keras_pose.config import Config


@dataclasses.dataclass
class CropAugmentConfig(Config):
    """Top-down training augmentation (SimpleBaseline COCO: rot 40, scale 0.3, flip)."""

    rotation: float = 40.0       # degrees; a normal draw with this std, clipped to +-rotation
    rotation_prob: float = 0.6   # probability that a sample is rotated at all
    scale: float = 0.3           # relative; a normal draw with this std, clipped to 1 +- scale
    flip_prob: float = 0.5

    def validate(self) -> None:
        for name in ("rotation_prob", "flip_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"CropAugmentConfig.{name} must be in [0, 1], got {getattr(self, name)}")
        if self.rotation < 0 or not 0.0 <= self.scale < 1.0:
            raise ValueError(f"CropAugmentConfig: need rotation >= 0 and 0 <= scale < 1, "
                             f"got rotation={self.rotation}, scale={self.scale}")


def box_problem(box_xywh, image_size: Optional[Tuple[int, int]] = None) -> Optional[str]:
    """Why a box cannot be cropped, or None if it can.

    Args:
        box_xywh: [x, y, w, h] pixels.
        image_size: optional (H, W); a box entirely outside the image is bad.
    """
    try:
        b = np.asarray(box_xywh, np.float64).reshape(-1)
    except (TypeError, ValueError):
        return f"box is not numeric: {box_xywh!r}"
    if b.shape != (4,):
        return f"box must have 4 numbers [x, y, w, h], got {b.size}"
    if not np.isfinite(b).all():
        return "box has NaN/inf coordinates"
    if b[2] <= 0 or b[3] <= 0:
        return f"box has zero or negative size (w={b[2]:.3g}, h={b[3]:.3g})"
    if image_size is not None:
        H, W = image_size
        if b[0] >= W or b[1] >= H or b[0] + b[2] <= 0 or b[1] + b[3] <= 0:
            return f"box {b.round(1).tolist()} lies entirely outside the {W}x{H} image"
    return None


def box_to_center_scale(box_xywh, aspect_ratio: float, padding: float = 1.25):
    """COCO box -> (center (2,), scale (2,)) in pixels at aspect ``aspect_ratio`` = W / H.

    The shorter side is grown to the aspect ratio (the box is never cropped),
    then both sides are multiplied by ``padding``.
    """
    problem = box_problem(box_xywh)
    if problem:
        raise ValueError(f"box_to_center_scale: {problem}")
    x, y, w, h = (float(v) for v in np.asarray(box_xywh, np.float64).reshape(4))
    center = np.array([x + 0.5 * w, y + 0.5 * h])
    if w > aspect_ratio * h:
        h = w / aspect_ratio
    else:
        w = h * aspect_ratio
    return center, np.array([w, h]) * padding


def crop_affine(center, scale, rotation: float, out_size: Tuple[int, int],
                flip: bool = False) -> np.ndarray:
    """(2, 3) UDP affine: image pixels -> crop pixels.

    The box of size ``scale`` (w, h) around ``center``, rotated by ``rotation``
    degrees (counter-clockwise on screen), maps onto [0, W - 1] x [0, H - 1] of an
    ``out_size`` = (H, W) crop. ``flip`` appends the crop mirror x -> (W - 1) - x.
    """
    H, W = int(out_size[0]), int(out_size[1])
    sx = (W - 1) / float(scale[0])
    sy = (H - 1) / float(scale[1])
    t = math.radians(rotation)
    # Screen rotation with y pointing down: a counter-clockwise turn is [[c, s], [-s, c]].
    rot = np.array([[math.cos(t), math.sin(t)], [-math.sin(t), math.cos(t)]])
    a = np.diag([sx, sy]) @ rot
    c = np.asarray(center, np.float64).reshape(2)
    b = np.array([(W - 1) / 2.0, (H - 1) / 2.0]) - a @ c
    m = np.concatenate([a, b[:, None]], axis=1)
    if flip:
        m = mirror_affine(W) @ np.vstack([m, [0.0, 0.0, 1.0]])
    return m


def mirror_affine(width: int) -> np.ndarray:
    """(2, 3) horizontal mirror of a ``width``-pixel crop: x -> (width - 1) - x."""
    return np.array([[-1.0, 0.0, width - 1.0], [0.0, 1.0, 0.0]])


def warp_crop(image, matrix, out_size: Tuple[int, int]) -> np.ndarray:
    """Warp ``image`` (H0, W0, C) with ``matrix`` into an (H, W, C) crop (bilinear, zero border)."""
    H, W = int(out_size[0]), int(out_size[1])
    return cv2.warpAffine(np.asarray(image), np.asarray(matrix, np.float64), (W, H),
                          flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def transform_keypoints(keypoints, matrix, flip_perm: Optional[Sequence[int]] = None) -> np.ndarray:
    """(K, 3) [x, y, v] through a (2, 3) affine; v is kept and unlabelled points stay 0.

    Pass ``flip_perm`` when the affine mirrors, so that left/right joints swap.
    """
    kp = np.asarray(keypoints, np.float64).reshape(-1, 3).copy()
    m = np.asarray(matrix, np.float64)
    labelled = kp[:, 2] > 0
    xy = kp[:, :2] @ m[:, :2].T + m[:, 2]
    kp[:, :2] = np.where(labelled[:, None], xy, 0.0)
    if flip_perm is not None:
        kp = kp[np.asarray(flip_perm)]
    return kp


def random_crop_params(rng: np.random.Generator, aug: CropAugmentConfig):
    """Draw (scale_factor, rotation_degrees, flip) for one training sample."""
    s = float(np.clip(rng.normal() * aug.scale + 1.0, 1.0 - aug.scale, 1.0 + aug.scale))
    r = 0.0
    if rng.random() < aug.rotation_prob:
        r = float(np.clip(rng.normal() * aug.rotation, -aug.rotation, aug.rotation))
    flip = bool(rng.random() < aug.flip_prob)
    return s, r, flip


def topdown_crop(image, keypoints, box_xywh, out_size: Tuple[int, int],
                 flip_perm: Optional[Sequence[int]] = None,
                 rng: Optional[np.random.Generator] = None,
                 augment: Optional[CropAugmentConfig] = None, padding: float = 1.25):
    """One person's (optionally augmented) crop.

    Args:
        image: (H0, W0, 3) array (RGB by house convention).
        keypoints: (K, 3) [x, y, v] in image pixels, or None.
        box_xywh: the person box; check it first with ``box_problem``.
        out_size: (H, W) of the crop.
        flip_perm: (K,) permutation used when the crop is mirrored.
        rng, augment: draw scale / rotation / flip when both are given.

    Returns:
        (crop (H, W, 3), keypoints in crop pixels (K, 3) or None, matrix (2, 3)).
    """
    H, W = int(out_size[0]), int(out_size[1])
    center, scale = box_to_center_scale(box_xywh, W / H, padding)
    rot, flip = 0.0, False
    if rng is not None and augment is not None:
        s, rot, flip = random_crop_params(rng, augment)
        scale = scale * s
        if flip and flip_perm is None:
            raise ValueError("topdown_crop: flip augmentation needs flip_perm")
    m = crop_affine(center, scale, rot, (H, W), flip=flip)
    crop = warp_crop(image, m, (H, W))
    kp = None
    if keypoints is not None:
        kp = transform_keypoints(keypoints, m, flip_perm if flip else None)
    return crop, kp, m
