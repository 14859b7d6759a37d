"""Image loading (with its one-line error) and atomic file writes, below data/ and inference/.

Images are RGB uint8 (H, W, 3) everywhere in keras_pose.

File products are written atomically: a reader sees the old complete file or the
new one. Every file one command writes and another reads (an export's
``model.tflite`` and ``model.json``, a run's ``config.json`` and ``metrics.json``,
checkpoints) goes through ``atomic_path`` / ``atomic_write_*``: the bytes land in
a temporary file *in the same folder* (a rename is atomic only within one file
system), are flushed and fsync'ed, and the temporary name is then
``os.replace``-d onto the final one. A kill at any moment leaves either the
previous file or the new one, never a half-written file under the final name; a
stray ``.<name>.*.tmp*`` is the only trace. For products of several files (an
export) write the payload first and the file that describes it (the sidecar)
last, and keep whatever is expensive or can fail (conversion, validation) before
the first rename.

NumPy and OpenCV only (no TensorFlow).
"""
from __future__ import annotations

import contextlib
import json
import os
import pathlib
import tempfile

import cv2
import numpy as np

__all__ = ["ImageReadError", "load_image", "atomic_path", "atomic_write_bytes",
           "atomic_write_text", "atomic_write_json"]


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


# ------------------------------------------------------------- atomic writes
TMP_SUFFIX = ".tmp"


def _fsync_dir(folder: str) -> None:
    """Persist the rename itself (the directory entry); best effort off POSIX."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path, suffix: str = ""):
    """Yield a temporary path beside ``path``; on success it replaces ``path``.

    For writers that want a file name (``model.save``, ``save_weights``); ``suffix``
    keeps an extension such writers check (".keras", ".weights.h5"). On an
    exception the temporary file is removed and ``path`` is left untouched.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=TMP_SUFFIX + suffix,
                               dir=folder)
    os.close(fd)
    os.remove(tmp)  # writers such as h5py refuse to overwrite; they create it again
    try:
        yield tmp
        if not os.path.exists(tmp):
            raise OSError(f"{path}: the writer produced no file")
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(folder)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def atomic_write_bytes(path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temporary file, fsync, rename)."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())


def atomic_write_text(path, text: str) -> None:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path, obj, **dump_kwargs) -> None:
    """Write ``obj`` as JSON to ``path`` atomically (``json.dumps`` keywords pass through)."""
    dump_kwargs.setdefault("indent", 2)
    atomic_write_text(path, json.dumps(obj, **dump_kwargs))
