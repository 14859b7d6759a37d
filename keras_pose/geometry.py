"""Geometry below ``data/`` and ``inference/``: affines, letterbox, crop frames.

Shapes: points (..., 2) [x, y]; affines are (2, 3) arrays mapping ORIGINAL
pixels -> model-input (or crop) pixels, with pixel centres at integer
coordinates (the convention of the COCO annotations and of ``cv2.warpAffine``).
Poses go back with ``poses.transform(invert_affine(M))``.

* Letterbox (Simple Pose, Li et al. AAAI 2020, §5.2 of ``docs/method_bottom_up.md``):
  resize keeping the aspect ratio, pad bottom/right. A resize by s maps
  x -> s * x + (s - 1) / 2: ``cv2.resize`` aligns pixel *areas*, so pixel 0's
  centre lands at (s - 1) / 2, not at 0.
* Crop frames (top-down, ``docs/method_top_down.md`` §2.4): COCO boxes [x, y, w, h]
  widened to the crop's aspect ratio and padded by 1.25 (SimpleBaseline); scale
  in pixels (no pixel_std 200). UDP (Huang et al., CVPR 2020): the box extent
  maps onto (out_size - 1), so a crop mirror is x -> (W - 1) - x, exact on the grid.

NumPy and OpenCV only (no TensorFlow).
"""
from __future__ import annotations

import math
from typing import Optional, Tuple

import cv2
import numpy as np

from keras_pose.io import _to_rgb_uint8

__all__ = ["apply_affine", "box_problem", "box_to_center_scale", "compose", "crop_affine",
           "invert_affine", "letterbox", "letterbox_geometry", "letterbox_to", "map_affine",
           "mirror_affine", "resize_affine", "warp_crop"]


# ---------------------------------------------------------------- affines
def invert_affine(matrix) -> np.ndarray:
    """Inverse of a (2, 3) affine map (x' = A x + b) as a (2, 3) array."""
    m = np.asarray(matrix, np.float64).reshape(2, 3)
    a_inv = np.linalg.inv(m[:, :2])
    return np.concatenate([a_inv, -a_inv @ m[:, 2:]], axis=1)


def apply_affine(points, matrix) -> np.ndarray:
    """Apply a (2, 3) affine map to (..., 2) points; returns float64 (..., 2)."""
    m = np.asarray(matrix, np.float64).reshape(2, 3)
    p = np.asarray(points, np.float64)
    return p @ m[:, :2].T + m[:, 2]


def compose(a, b) -> np.ndarray:
    """The affine "b then a" as (2, 3)."""
    ha = np.vstack([np.asarray(a, np.float64).reshape(2, 3), [0.0, 0.0, 1.0]])
    hb = np.vstack([np.asarray(b, np.float64).reshape(2, 3), [0.0, 0.0, 1.0]])
    return (ha @ hb)[:2]


def map_affine(stride: int) -> np.ndarray:
    """Input pixels -> cells of a stride-s map: q = (X - (s/2 - 0.5)) / s.

    Map cell q is centred on input pixel s*q + s/2 - 0.5 (the bottom-up
    encoder's convention), so maps of different input sizes align by an affine.
    """
    s = float(stride)
    off = -(s / 2.0 - 0.5) / s
    return np.array([[1 / s, 0.0, off], [0.0, 1 / s, off]])


# -------------------------------------------------------------- letterbox
def resize_affine(sx: float, sy: float) -> np.ndarray:
    """(2, 3) affine of a ``cv2.resize`` by (sx, sy) in pixel-centre coordinates."""
    return np.array([[sx, 0.0, 0.5 * (sx - 1.0)], [0.0, sy, 0.5 * (sy - 1.0)]], np.float64)


def _check_image(image) -> np.ndarray:
    if not isinstance(image, np.ndarray):
        raise ValueError(f"image must be a NumPy array, got {type(image).__name__}")
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        image = _to_rgb_uint8(image, "image", bgr=False)
    return image


def _pad(image, out_h, out_w, pad_value):
    h, w = image.shape[:2]
    return cv2.copyMakeBorder(image, 0, out_h - h, 0, out_w - w, cv2.BORDER_CONSTANT,
                              value=(pad_value,) * 3)


def _resize(image, new_w, new_h, interpolation):
    h, w = image.shape[:2]
    if (new_w, new_h) == (w, h):
        return image
    return cv2.resize(image, (new_w, new_h), interpolation=interpolation)


def letterbox_geometry(image_hw, height: int = 640, multiple: int = 64,
                       max_size=(2600, 3800)):
    """Sizes of ``letterbox`` without touching pixels.

    Returns ((content_h, content_w), (out_h, out_w), M): the resized image
    size, the padded size (multiples of ``multiple``) and the (2, 3) affine.
    """
    h, w = (int(v) for v in image_hw[:2])
    if h <= 0 or w <= 0:
        raise ValueError(f"image size must be positive, got {image_hw}")
    if height <= 0 or multiple <= 0:
        raise ValueError(f"height and multiple must be positive, got {height}, {multiple}")
    scale = height / h
    if max_size is not None and (h * scale > max_size[0] or w * scale > max_size[1]):
        scale = min(max_size[0] / h, max_size[1] / w)
    new_h, new_w = max(1, int(round(h * scale))), max(1, int(round(w * scale)))
    out_h = -(-new_h // multiple) * multiple
    out_w = -(-new_w // multiple) * multiple
    # The exact per-axis factors after rounding the size, as cv2.resize uses them.
    return (new_h, new_w), (out_h, out_w), resize_affine(new_w / w, new_h / h)


def letterbox(image, height: int = 640, multiple: int = 64, pad_value: int = 128,
              max_size=(2600, 3800), interpolation=cv2.INTER_CUBIC):
    """Resize to a target height and pad to multiples of ``multiple`` (Simple Pose §5.2).

    image: RGB uint8 (H, W, 3). The scale is height / H, reduced to
    min(max_h / H, max_w / W) if the result would exceed ``max_size``
    (the authors' 2600 x 3800 guard); the resize is bicubic; padding goes to the
    bottom and right with ``pad_value`` (the network sees 128 grey there).

    Returns:
        (padded, M): padded uint8 (H', W', 3) with H', W' multiples of
        ``multiple``, and the (2, 3) original -> input affine. The image content
        occupies the top-left round(H s) x round(W s) pixels.
    """
    image = _check_image(image)
    (new_h, new_w), (out_h, out_w), m = letterbox_geometry(image.shape, height, multiple, max_size)
    resized = _resize(image, new_w, new_h, interpolation)
    return _pad(resized, out_h, out_w, pad_value), m


def letterbox_to(image, size, pad_value: int = 128, interpolation=cv2.INTER_CUBIC):
    """Fit inside a fixed (H, W) (exported models), keeping the aspect ratio.

    The image is scaled by min(H / h, W / w) and padded bottom/right with
    ``pad_value``. Returns (uint8 (H, W, 3), (2, 3) original -> input affine).
    """
    image = _check_image(image)
    out_h, out_w = (int(v) for v in size)
    if out_h <= 0 or out_w <= 0:
        raise ValueError(f"size must be a positive (H, W), got {size}")
    h, w = image.shape[:2]
    scale = min(out_h / h, out_w / w)
    new_h = min(out_h, max(1, int(round(h * scale))))
    new_w = min(out_w, max(1, int(round(w * scale))))
    resized = _resize(image, new_w, new_h, interpolation)
    return _pad(resized, out_h, out_w, pad_value), resize_affine(new_w / w, new_h / h)


# ------------------------------------------------------------ crop frames
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
