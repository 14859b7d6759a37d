"""Top-down training crops: augmented box -> UDP affine -> warped crop + keypoints.

Shapes: K keypoints; crops are (H, W, 3) with out_size = (H, W); affine
matrices are (2, 3) and map ORIGINAL image pixels -> crop pixels. The crop
frame itself (box -> centre/scale -> UDP affine, ``docs/method_top_down.md``
§2.4) lives in ``keras_pose.geometry``, shared with the top-down predictor.

* Training augmentation: rotation +-40 deg with probability 0.6, scale +-30 %,
  horizontal flip with ``spec.flip_perm`` (SimpleBaseline's COCO recipe).

NumPy + OpenCV only: imports without TensorFlow.
"""
from __future__ import annotations

import dataclasses
from typing import Optional, Sequence, Tuple

import numpy as np

from keras_pose.config import Config
from keras_pose.geometry import (box_problem, box_to_center_scale, crop_affine,  # noqa: F401
                                 mirror_affine, warp_crop)


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
