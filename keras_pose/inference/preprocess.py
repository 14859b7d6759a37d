"""Image -> model input + transform record. NumPy and OpenCV only (no TensorFlow).

Shared by the Keras predictor and the TFLite runner, so both see identical
pixels. Images are RGB uint8 (H, W, 3); models take them as float32 0..255
(normalisation lives in the graph).

Transform records are (2, 3) affines mapping ORIGINAL pixels -> model-input
pixels, with pixel centres at integer coordinates (the convention of the
annotations and of ``cv2.warpAffine``). A resize by s therefore maps
x -> s * x + (s - 1) / 2: ``cv2.resize`` aligns pixel *areas*, so pixel 0's
centre lands at (s - 1) / 2, not at 0. Map poses back with
``poses.transform(invert_affine(M))``.
"""
from __future__ import annotations

import os
import pathlib

import cv2
import numpy as np

__all__ = ["ImageReadError", "load_image", "letterbox", "letterbox_geometry", "letterbox_to",
           "resize_affine"]


class ImageReadError(ValueError):
    """An image that cannot be read or decoded (message names the file)."""


def _to_rgb_uint8(img: np.ndarray, what: str, bgr: bool) -> np.ndarray:
    """Gray / RGB(A) / BGR(A), any of uint8, uint16 or float 0..255 -> RGB uint8 (H, W, 3)."""
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[..., 0]
    if img.ndim not in (2, 3) or (img.ndim == 3 and img.shape[2] not in (3, 4)):
        raise ImageReadError(f"{what}: expected an (H, W), (H, W, 3) or (H, W, 4) image, "
                             f"got shape {img.shape}")
    if img.shape[0] == 0 or img.shape[1] == 0:
        raise ImageReadError(f"{what}: empty image of shape {img.shape}")
    if img.dtype == np.uint16:
        # 16-bit PNGs: keep the top of the range (x / 257 maps 65535 -> 255 exactly).
        img = np.round(img.astype(np.float32) / 257.0)
    if img.dtype != np.uint8:
        if not np.issubdtype(img.dtype, np.number) or np.issubdtype(img.dtype, np.complexfloating):
            raise ImageReadError(f"{what}: unsupported pixel type {img.dtype}")
        img = np.clip(np.nan_to_num(img.astype(np.float32)), 0, 255).round().astype(np.uint8)
    if img.ndim == 2:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
    if img.shape[2] == 4:
        # Alpha is dropped (not composited): photos with alpha are rare and a
        # background colour would be a guess.
        return cv2.cvtColor(img, cv2.COLOR_BGRA2RGB if bgr else cv2.COLOR_RGBA2RGB)
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB) if bgr else np.ascontiguousarray(img)


def load_image(path_or_array) -> np.ndarray:
    """Read an image as RGB uint8 (H, W, 3).

    Args:
        path_or_array: a file path (any format OpenCV decodes: JPEG, PNG incl.
            16-bit and RGBA, grayscale, ...), encoded bytes, or an array. Arrays
            are taken to be RGB(A) or gray already, uint8/uint16 or float 0..255.

    Raises:
        ImageReadError: missing, empty, corrupt or undecodable input (one line
            naming the file).
    """
    if isinstance(path_or_array, np.ndarray):
        return _to_rgb_uint8(path_or_array, "image array", bgr=False)
    if isinstance(path_or_array, (bytes, bytearray, memoryview)):
        what, data = "image bytes", np.frombuffer(path_or_array, np.uint8)
    elif isinstance(path_or_array, (str, os.PathLike)):
        path = pathlib.Path(path_or_array)
        what = str(path)
        if not path.is_file():
            raise ImageReadError(f"image file not found: {path}")
        # np.fromfile + imdecode (not imread) so non-ASCII paths work everywhere.
        data = np.fromfile(str(path), np.uint8)
    else:
        raise ImageReadError(f"cannot read an image from {type(path_or_array).__name__}")
    if data.size == 0:
        raise ImageReadError(f"{what}: file is empty (0 bytes)")
    img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if img is None:
        raise ImageReadError(f"{what}: not a decodable image (corrupt or unsupported format)")
    return _to_rgb_uint8(img, what, bgr=True)


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
