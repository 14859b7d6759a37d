"""Training augmentation: one affine warp (+ flip) and an HSV tint, with a record.

Shapes: N persons, K keypoints, H x W model input, h x w original image.

The geometry follows ``docs/method_bottom_up.md`` §2.2 (the authors' ``AugmentSelection``):

    M = T(W/2 - 0.5 + dx, H/2 - 0.5 + dy) · F · S(target_dist / s_self · s_aug) · R(θ) · T(-cx, -cy)

with s_self = scale_provided · H / (H - 1), R(θ) = [[cos, sin], [-sin, cos]] and
F = diag(-1, 1) when flipping. M maps original image pixels to model-input
pixels (the house transform-record convention), so poses predicted on the warp
go back with ``Poses.transform(invert_affine(M))``.

OpenCV + NumPy only: imports without TensorFlow.
"""
from __future__ import annotations

import dataclasses
import math

import cv2
import numpy as np

from keras_pose.config import Config

# The authors' grey border is BGR (124, 127, 127); our images are RGB.
BORDER_RGB = (127, 127, 124)


@dataclasses.dataclass
class AugmentConfig(Config):
    """Augmentation draws; defaults are the authors' ``config.py`` (§2.2 table)."""

    flip_prob: float = 0.5
    tint_prob: float = 0.2
    max_rotation: float = 40.0      # degrees, drawn U(-max, max) every time
    scale_prob: float = 0.8         # probability of drawing a random scale
    scale_min: float = 0.7
    scale_max: float = 1.3
    max_shift: float = 50.0         # pixels, int(U(-1, 1) * max) (truncated toward 0)
    target_dist: float = 0.6        # main person height as a fraction of H
    hue_range: tuple[int, int] = (-10, 10)    # OpenCV hue units (0..179), inclusive
    sat_range: tuple[int, int] = (-20, 60)
    val_range: tuple[int, int] = (-20, 40)

    def validate(self) -> None:
        for name in ("flip_prob", "tint_prob", "scale_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"AugmentConfig.{name} must be in [0, 1], got {getattr(self, name)}")
        if not 0 < self.scale_min <= self.scale_max:
            raise ValueError(f"AugmentConfig needs 0 < scale_min <= scale_max, got "
                             f"{self.scale_min}, {self.scale_max}")
        if self.max_rotation < 0 or self.max_shift < 0:
            raise ValueError("AugmentConfig.max_rotation and max_shift must be >= 0")
        if self.target_dist <= 0:
            raise ValueError(f"AugmentConfig.target_dist must be > 0, got {self.target_dist}")


@dataclasses.dataclass
class AugmentParams:
    """One draw of the augmentation (degrees, scale factor, pixel shifts)."""

    flip: bool = False
    tint: bool = False
    rotation: float = 0.0
    scale: float = 1.0
    dx: int = 0
    dy: int = 0


@dataclasses.dataclass
class TransformRecord:
    """How an input image was made: (2, 3) original -> input affine, flip flag, (H, W)."""

    matrix: np.ndarray
    flip: bool
    out_size: tuple


@dataclasses.dataclass
class AugmentedSample:
    """Warped image (H, W, 3) uint8 RGB, keypoints (N, K, 3), masks (H, W) uint8 0..255, record."""

    image: np.ndarray
    keypoints: np.ndarray
    person_mask: np.ndarray | None
    ignore_mask: np.ndarray | None
    record: TransformRecord


def augment_params(rng: np.random.Generator, config: AugmentConfig | None = None) -> AugmentParams:
    """Draw one set of augmentation parameters (§2.2), in a fixed order."""
    c = config or AugmentConfig()
    flip = bool(rng.random() < c.flip_prob)
    tint = bool(rng.random() < c.tint_prob)
    rotation = float(rng.uniform(-c.max_rotation, c.max_rotation))
    use_scale = rng.random() < c.scale_prob
    scale = float(rng.uniform(c.scale_min, c.scale_max))
    # int() truncates toward 0 like the original's int(uniform(-1, 1) * 50).
    dx = int(rng.uniform(-1.0, 1.0) * c.max_shift)
    dy = int(rng.uniform(-1.0, 1.0) * c.max_shift)
    return AugmentParams(flip, tint, rotation, scale if use_scale else 1.0, dx, dy)


def training_affine(center, scale_provided: float, params: AugmentParams, out_size,
                    target_dist: float = 0.6) -> np.ndarray:
    """The (2, 3) float64 affine of §2.2 mapping original pixels to the (H, W) input.

    Args:
        center: (cx, cy) main-person centre in original pixels.
        scale_provided: main-person box height / H (``TrainingSample``).
        params: the augmentation draw.
        out_size: (H, W) of the model input.
        target_dist: main-person height as a fraction of H (0.6).
    """
    h, w = int(out_size[0]), int(out_size[1])
    if scale_provided <= 0 or not math.isfinite(scale_provided):
        raise ValueError(f"scale_provided must be a positive number, got {scale_provided}")
    s_self = scale_provided * h / (h - 1)
    sigma = target_dist / s_self * params.scale
    t = math.radians(params.rotation)
    rot = np.array([[math.cos(t), math.sin(t), 0], [-math.sin(t), math.cos(t), 0], [0, 0, 1]])
    cx, cy = float(center[0]), float(center[1])
    to_origin = np.array([[1, 0, -cx], [0, 1, -cy], [0, 0, 1]], np.float64)
    scale = np.diag([sigma, sigma, 1.0])
    flip = np.diag([-1.0 if params.flip else 1.0, 1.0, 1.0])
    to_out = np.array([[1, 0, w / 2 - 0.5 + params.dx], [0, 1, h / 2 - 0.5 + params.dy], [0, 0, 1]])
    return (to_out @ flip @ scale @ rot @ to_origin)[:2]


def apply_affine_to_sample(image, keypoints, person_mask, ignore_mask, M, flip: bool,
                           spec=None, out_size=None) -> AugmentedSample:
    """Warp an image, its keypoints and masks with M (§2.2).

    Args:
        image: (h, w, 3) uint8 RGB.
        keypoints: (N, K, 3) COCO-order [x, y, v] in original pixels.
        person_mask, ignore_mask: (h, w) masks, 1 on persons / where ignored, or None
            (bool, uint8 0/1 or 0..255, or float in [0, 1]).
        M: (2, 3) original -> input affine (``training_affine``).
        flip: whether M mirrors x; then left/right keypoints swap with
            ``spec.flip_perm`` so that a "left wrist" stays the person's left wrist.
        spec: KeypointSpec (default COCO).
        out_size: (H, W) of the output; defaults to the input image size.

    Image: bilinear, constant border ``BORDER_RGB``. Masks come back as uint8
    0..255 (255 = on), warped bilinearly like the original's 0/255 masks, with
    border 0: outside the image nothing is a person and nothing is ignored.
    Keypoints are mapped by M and kept even when they land outside (the codec
    clips its windows); non-finite coordinates become (0, 0) with v = 0.
    """
    from keras_pose.skeleton import COCO
    spec = spec or COCO
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image must be (h, w, 3) uint8 RGB, got {image.shape} {image.dtype}")
    M = np.asarray(M, np.float64)
    if M.shape != (2, 3) or not np.isfinite(M).all():
        raise ValueError(f"M must be a finite (2, 3) affine, got shape {M.shape}")
    oh, ow = (image.shape[:2] if out_size is None else (int(out_size[0]), int(out_size[1])))
    warped = cv2.warpAffine(image, M, (ow, oh), flags=cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_CONSTANT, borderValue=BORDER_RGB)
    pm, im = _warp_masks(person_mask, ignore_mask, M, (oh, ow))

    kp = np.array(keypoints, np.float32, copy=True)
    if kp.size == 0:
        kp = np.zeros((0, spec.num_keypoints, 3), np.float32)
    elif kp.ndim not in (2, 3) or kp.shape[-1] != 3:
        raise ValueError(f"keypoints must be (N, K, 3) [x, y, v], got shape {kp.shape}")
    kp = kp.reshape(-1, kp.shape[-2], 3)
    bad = ~np.isfinite(kp).all(axis=-1)
    kp[bad] = 0.0
    xy = kp[..., :2].astype(np.float64) @ M[:, :2].T + M[:, 2]
    kp[..., :2] = np.where(kp[..., 2:] > 0, xy, 0.0)
    if flip:
        kp = kp[:, spec.flip_perm]
    return AugmentedSample(warped, kp, pm, im, TransformRecord(M, bool(flip), (oh, ow)))


def _warp_masks(person_mask, ignore_mask, M, out_size):
    """Warp each mask as uint8 0/255 like the original (border 0); uint8 0..255 out.

    Two single-channel uint8 warps are ~5x faster than one float32 two-channel
    warp. A warped mask whose maximum is <= 1 (< 1/255 of a pixel anywhere) is
    zeroed, so "uint8 with max > 1 means 0..255" stays unambiguous downstream.
    """
    oh, ow = out_size
    out = []
    for m in (person_mask, ignore_mask):
        if m is None:
            out.append(None)
            continue
        m = np.asarray(m)
        if m.dtype == np.bool_ or (m.dtype == np.uint8 and m.max(initial=0) <= 1):
            m = m.astype(np.uint8) * np.uint8(255)
        elif m.dtype != np.uint8:
            m = cv2.convertScaleAbs(np.nan_to_num(m.astype(np.float32)), alpha=255.0)
        w = cv2.warpAffine(m, M, (ow, oh), flags=cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        if w.max(initial=0) <= 1:
            w[:] = 0
        out.append(w)
    return out[0], out[1]


def hsv_tint(image, rng: np.random.Generator, config: AugmentConfig | None = None) -> np.ndarray:
    """Random hue/saturation/value shift of a (h, w, 3) uint8 RGB image (§2.2).

    OpenCV HSV: H += U{-10..10} clipped to [0, 179]; S += U{-20..60} and
    V += U{-20..40}, clipped to [0, 255]. Returns a new uint8 RGB image.
    """
    c = config or AugmentConfig()
    deltas = [int(rng.integers(lo, hi + 1)) for lo, hi in (c.hue_range, c.sat_range, c.val_range)]
    # One 3-channel lookup table does the shift and the clip per channel.
    ramp = np.arange(256, dtype=np.int32)
    lut = np.stack([np.clip(ramp + d, 0, top) for d, top in zip(deltas, (179, 255, 255))], axis=-1)
    hsv = cv2.cvtColor(np.ascontiguousarray(image, np.uint8), cv2.COLOR_RGB2HSV)
    hsv = cv2.LUT(hsv, lut.astype(np.uint8).reshape(256, 1, 3))
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
