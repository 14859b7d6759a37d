"""Simple Pose ground truth: keypoints -> C = L + J + 2 target maps, loss mask, pyramid.

Shapes: N persons, K keypoints, J map points (synthesised ones included), L body
parts, all from the KeypointSpec (COCO: 17, 18 with the neck, 30, so C = 50), an
H x W input and h x w = H/s x W/s target maps (stride s).

Follows ``docs/method_bottom_up.md`` §2.1-2.6 (Li et al., "Simple Pose", AAAI 2020, and the
authors' ``Heatmapper``), vectorised: every keypoint window and every limb box of
the image is computed in one batch of NumPy calls, with no Python loop over
persons, limbs or cells. The numbers (float cell centres, round-half-to-even
windows, float32 keypoint Gaussians, float64 limb distances, the 0.01 floor, max
over persons for keypoints and mean for limbs, the uint8 area resize of the masks)
mirror the reference generator, so targets agree with it to float rounding.

Imports without TensorFlow.
"""
from __future__ import annotations

import logging
import math
import threading

import cv2
import numpy as np

_log = logging.getLogger(__name__)

# A keypoint farther than this many input sizes outside the input is treated as
# unlabelled. No augmentation of a real image lands a joint there, and it keeps
# integer window arithmetic far from overflow (1e9 or 1e30 just produce nothing).
FAR_LIMIT = 100


def window_half(sigma: float, threshold: float, stride: int) -> int:
    """Keypoint window half-size in cells: ceil(sqrt(-2 sigma^2 ln t) / s) (§2.3)."""
    return int(math.ceil(math.sqrt(-2.0 * sigma * sigma * math.log(threshold)) / stride))


def cell_centres(index, stride: int) -> np.ndarray:
    """Input-pixel position of cell indices: s*q + s/2 - 0.5 (§2.3, issue #23), float64."""
    return np.asarray(index, np.float64) * stride + (stride / 2.0 - 0.5)


# ----------------------------------------------------------------- validation
def _check_size(image_size, stride: int) -> tuple:
    try:
        height, width = (int(v) for v in image_size)
        bad = (height, width) != tuple(float(v) for v in image_size)
    except (TypeError, ValueError):
        raise ValueError(f"image_size must be (H, W) integers, got {image_size!r}") from None
    if bad or height <= 0 or width <= 0:
        raise ValueError(f"image_size must be positive integers (H, W), got {image_size!r}")
    if height % stride or width % stride:
        raise ValueError(f"image_size {height}x{width} is not a multiple of the stride {stride}")
    return height, width


def _check_keypoints(keypoints, num_keypoints: int) -> np.ndarray:
    try:
        kp = np.asarray(keypoints, dtype=np.float32)
    except (TypeError, ValueError):
        raise ValueError("keypoints must be a numeric (N, K, 3) array") from None
    if kp.size == 0:
        return np.zeros((0, num_keypoints, 3), np.float32)
    if kp.ndim != 3 or kp.shape[1:] != (num_keypoints, 3):
        raise ValueError(f"keypoints must have shape (N, {num_keypoints}, 3), got {kp.shape}")
    return kp


def _mask_to_u8(mask, name: str, size: tuple) -> np.ndarray:
    """(H, W) mask in [0, 1] (bool, 0/1 or float; uint8 above 1 is read as 0..255) -> uint8 0..255.

    The reference keeps masks as uint8 0/255 and area-resizes them as uint8, so the
    fractional values it trains on are multiples of 1/255; we quantise the same way.
    """
    m = np.asarray(mask)
    if m.ndim == 3 and m.shape[-1] == 1:
        m = m[..., 0]
    if m.shape != size:
        raise ValueError(f"{name} must have shape {size} (the input size), got {m.shape}")
    if m.dtype == np.bool_:
        return m.view(np.uint8) * np.uint8(255)
    if m.dtype == np.uint8:
        return m if m.max(initial=0) > 1 else m * np.uint8(255)
    if not np.issubdtype(m.dtype, np.number):
        raise ValueError(f"{name} must be numeric, got dtype {m.dtype}")
    # Rounds half to even and saturates to 0..255; NaN becomes 0.
    return cv2.convertScaleAbs(np.nan_to_num(m.astype(np.float32, copy=False)), alpha=255.0)


def _area_resize(mask_u8: np.ndarray, h: int, w: int) -> np.ndarray:
    """uint8 INTER_AREA resize to h x w, returned as float32 in [0, 1] (§2.2)."""
    small = cv2.resize(mask_u8, (w, h), interpolation=cv2.INTER_AREA)
    return small.astype(np.float32) * np.float32(1.0 / 255.0)


# ------------------------------------------------------------------ channels
def _sanitise(kp: np.ndarray, height: int, width: int) -> np.ndarray:
    """Non-finite or absurdly far points become unlabelled (v = 0, x = y = 0)."""
    far = FAR_LIMIT * max(height, width)
    with np.errstate(invalid="ignore"):
        ok = np.isfinite(kp).all(-1) & (np.abs(kp[..., :2]) <= far).all(-1)
    if ok.all():
        return kp
    kp = kp.copy()
    kp[~ok] = 0.0
    return kp


def _put_keypoints(out: np.ndarray, xy: np.ndarray, labelled: np.ndarray, start: int, cfg,
                   max_channel: int | None = None) -> None:
    """Max-combine one separable Gaussian window per labelled point into out[..., start + j].

    out: (h, w, C) float32, C-contiguous; xy: (N, J, 2) float32 internal points;
    labelled: (N, J) bool (§2.3). Also max-combines every window into
    out[..., max_channel] when given.
    """
    h, w = out.shape[:2]
    s = cfg.stride
    half = window_half(cfg.sigma, cfg.keypoint_threshold, s)
    n_idx, j_idx = np.nonzero(labelled)
    if n_idx.size == 0:
        return
    x = xy[n_idx, j_idx, 0]
    y = xy[n_idx, j_idx, 1]
    # float32 division and round-half-to-even, as the reference does on its float32 joints
    cx = np.round(x / np.float32(s)).astype(np.int64)
    cy = np.round(y / np.float32(s)).astype(np.int64)
    # The reference skips a window whose exclusive end is < 0 and slices the rest
    # against the map: keeping the windows that touch the map is the same thing.
    keep = (cx >= -half) & (cx <= w - 1 + half) & (cy >= -half) & (cy <= h - 1 + half)
    if not keep.all():
        x, y, cx, cy, j_idx = x[keep], y[keep], cx[keep], cy[keep], j_idx[keep]
    if j_idx.size == 0:
        return
    offs = np.arange(-half, half + 1)
    qx = cx[:, None] + offs                            # (M, 2h+1) column indices
    qy = cy[:, None] + offs
    two_sigma2 = np.float32(2.0 * cfg.sigma * cfg.sigma)
    # float32 exponent per axis and an outer product, like the reference
    ex = np.exp(-((cell_centres(qx, s).astype(np.float32) - x[:, None]) ** 2) / two_sigma2)
    ey = np.exp(-((cell_centres(qy, s).astype(np.float32) - y[:, None]) ** 2) / two_sigma2)
    # Cells off the map get value 0 and are parked on the border cell: max with 0
    # changes nothing there because every map value is >= 0.
    ex[(qx < 0) | (qx >= w)] = 0.0
    ey[(qy < 0) | (qy >= h)] = 0.0
    patch = (ey[:, :, None] * ex[:, None, :]).ravel()  # (M * (2h+1)^2,)
    cells = np.clip(qy, 0, h - 1)[:, :, None] * w + np.clip(qx, 0, w - 1)[:, None, :]
    nch = out.shape[-1]
    flat = out.reshape(-1)
    # 1-D ufunc.at is fast in NumPy 2; duplicates (persons sharing a keypoint type
    # and cell) combine by max (§2.3).
    np.maximum.at(flat, (cells * nch + (start + j_idx)[:, None, None]).ravel(), patch)
    if max_channel is not None:
        # the max over keypoint channels (§2.5) is the max over all windows
        np.maximum.at(flat, (cells * nch + max_channel).ravel(), patch)


def _put_limbs(out: np.ndarray, xy: np.ndarray, labelled: np.ndarray, spec, cfg) -> None:
    """Average the perpendicular-distance bands of all persons into out[..., limbs] (§2.4).

    Every cell of a limb's box gets g = exp(-d^2 / 2 sigma_p^2) with d the distance to
    the infinite line through the two joints, floored to ``limb_floor`` where
    g <= ``limb_threshold``; boxes of the same limb type are averaged per cell.
    """
    h, w = out.shape[:2]
    s = cfg.stride
    fr = np.asarray(spec.limb_from)
    to = np.asarray(spec.limb_to)
    both = labelled[:, fr] & labelled[:, to]           # (N, L)
    n_idx, k_idx = np.nonzero(both)
    if n_idx.size == 0:
        return
    p1 = xy[n_idx, fr[k_idx]]                          # (P, 2) float32
    p2 = xy[n_idx, to[k_idx]]
    zero = (p1 == p2).all(-1)
    if zero.any():
        # The reference prints a warning per occurrence; a debug line is enough.
        _log.debug("skipping %d zero-length limb(s)", int(zero.sum()))
        keep = ~zero
        p1, p2, k_idx = p1[keep], p2[keep], k_idx[keep]
    margin = np.float32(cfg.limb_margin)
    fs = np.float32(s)
    lo = np.round((np.minimum(p1, p2) - margin) / fs).astype(np.int64)   # (P, 2) x, y
    hi = np.round((np.maximum(p1, p2) + margin) / fs).astype(np.int64)
    # The reference skips boxes whose (inclusive) end is < 0, clamps the start at 0
    # and lets the array edge clip the end.
    lo = np.maximum(lo, 0)
    hi = np.minimum(hi, np.array([w - 1, h - 1]))
    ncol = np.maximum(hi[:, 0] - lo[:, 0] + 1, 0)
    nrow = np.maximum(hi[:, 1] - lo[:, 1] + 1, 0)
    area = ncol * nrow
    total = int(area.sum())
    if total == 0:
        return
    # One flat list of all box cells: pair id and the local offset inside its box.
    pair = np.repeat(np.arange(area.size), area)
    local = np.arange(total) - np.repeat(np.cumsum(area) - area, area)
    nc = ncol[pair]
    r = lo[pair, 1] + local // nc
    q = lo[pair, 0] + local % nc
    # float32 direction and norm, float64 cell offsets, as the reference mixes them
    d_xy = (p2 - p1)                                   # float32
    norm = np.sqrt((d_xy * d_xy).sum(-1).astype(np.float64)) + 1e-6
    a = p1.astype(np.float64)
    dx = a[pair, 0] - cell_centres(q, s)
    dy = a[pair, 1] - cell_centres(r, s)
    dist = np.abs(d_xy[pair, 0] * dy - dx * d_xy[pair, 1]) / norm[pair]
    g = np.exp(-(dist * dist) / (2.0 * cfg.limb_sigma * cfg.limb_sigma))
    g[g <= cfg.limb_threshold] = cfg.limb_floor
    num_limbs = fr.size
    cell = r * w + q
    # accumulate straight into the float32 output like the reference (sum, then
    # divide by the count of boxes per cell); ufunc.at on 1-D indices is fast and
    # touches only the T box cells, never a full-size temporary
    flat = out.reshape(-1)
    idx = cell * out.shape[-1] + k_idx[pair]
    np.add.at(flat, idx, g.astype(np.float32))
    count = _scratch_count(h * w * num_limbs)
    cidx = cell * num_limbs + k_idx[pair]
    # an array of ones, not the scalar 1: only same-dtype arrays take ufunc.at's fast path
    try:
        np.add.at(count, cidx, np.ones(total, np.float32))
        # repeated indices write the same quotient
        flat[idx] = flat[idx] / count[cidx]
    finally:
        count[cidx] = 0                                # leave the scratch zeroed


_local = threading.local()


def _scratch_count(size: int) -> np.ndarray:
    """A zeroed float32 buffer of ``size`` per thread (tf.data may call us from several)."""
    buf = getattr(_local, "count", None)
    if buf is None or buf.size < size:
        buf = _local.count = np.zeros(size, np.float32)
    return buf[:size]


# ---------------------------------------------------------------------- API
def encode_targets(codec, keypoints, image_size, person_mask=None, ignore_mask=None) -> dict:
    """Targets of one image (§2.1-2.5).

    Args:
        codec: the BodyPartsCodec (its ``config`` and ``spec`` are read).
        keypoints: (N, K, 3) COCO order [x, y, v], input pixels; a point takes part
            iff v > 0. NaN/inf or absurdly far points count as unlabelled; points
            just outside the input still draw the clipped part of their window.
        image_size: (H, W), multiples of the stride.
        person_mask: optional (H, W) (or (H, W, 1)) in [0, 1], 1 on persons -> channel 48;
            bool, uint8 0/1 or 0/255, or float. Without it channel 48 is all 0.
        ignore_mask: optional, same forms, 1 where the loss ignores. Without it the
            loss mask is all 1.

    Returns:
        {"heatmaps": (h, w, C) float32 in [0, 1], "mask": (h, w, 1) float32};
        channels: limbs, internal keypoints, eroded person mask, max over keypoints.
    """
    cfg, spec = codec.config, codec.spec
    s = cfg.stride
    height, width = _check_size(image_size, s)
    h, w = height // s, width // s
    kp = _sanitise(_check_keypoints(keypoints, spec.num_keypoints), height, width)
    person_u8 = None if person_mask is None else _mask_to_u8(person_mask, "person_mask", (height, width))
    ignore_u8 = None if ignore_mask is None else _mask_to_u8(ignore_mask, "ignore_mask", (height, width))

    internal = spec.to_internal(kp)                    # (N, J, 3) with the neck
    labelled = internal[..., 2] > 0                    # internal flag < 2 (§2.1)
    xy = np.ascontiguousarray(internal[..., :2])

    out = np.zeros((h, w, spec.num_channels), np.float32)
    _put_limbs(out, xy, labelled, spec, cfg)
    k0, k1 = spec.keypoint_start, spec.person_mask_channel
    _put_keypoints(out, xy, labelled, k0, cfg, max_channel=spec.keypoint_max_channel)
    if person_u8 is not None:
        small = cv2.resize(person_u8, (w, h), interpolation=cv2.INTER_AREA)
        # 3x3 min filter; OpenCV's default border leaves the image edges uneroded (§2.5)
        small = cv2.erode(small, np.ones((3, 3), np.uint8))
        out[..., k1] = small.astype(np.float32) * np.float32(1.0 / 255.0)
    # The final clip to [0, 1] of §2.5 is a no-op here and is skipped: every value
    # is exp(<= 0), a mean of such values, the floor, or a uint8 mask / 255.
    if ignore_u8 is None:
        mask = np.ones((h, w, 1), np.float32)
    else:
        # The reference stores mask_miss = 255 - ignore and area-resizes that
        # (rounding makes the order of the two steps matter).
        miss = np.subtract(np.uint8(255), ignore_u8)
        mask = _area_resize(miss, h, w)[..., None]
    return {"heatmaps": out, "mask": mask}


def build_pyramid(codec, targets) -> list:
    """The ``num_scales`` supervision scales, finest first (§2.6).

    Targets at scale j are average-pooled by 2**j (= AveragePooling2D(2**j), done
    as repeated 2x2 means); the mask at scale j is a bilinear resize at half-pixel
    centres without antialias (= tf.image.resize(..., "bilinear")), which for a
    factor f = 2**j >= 2 averages the 2 x 2 input cells around f*i + f/2 - 0.5.
    Mask values below ``mask_cut`` become 0 at every scale, j = 0 included (the
    reference applies the cut after resizing to every output size).

    Returns:
        list of {"heatmaps": (h/2**j, w/2**j, C), "mask": (h/2**j, w/2**j, 1)} float32;
        the scale-0 heatmaps are the input array itself (not a copy).
    """
    cfg = codec.config
    heat = np.asarray(targets["heatmaps"], np.float32)
    mask = np.asarray(targets["mask"], np.float32)
    if heat.ndim != 3 or mask.shape != heat.shape[:2] + (1,):
        raise ValueError(f"targets must hold heatmaps (h, w, C) and mask (h, w, 1), "
                         f"got {heat.shape} and {mask.shape}")
    h, w = heat.shape[:2]
    f_max = 2 ** (cfg.num_scales - 1)
    if h % f_max or w % f_max:
        raise ValueError(f"target maps {h}x{w} cannot be halved {cfg.num_scales - 1} times; "
                         f"the input size must be a multiple of {cfg.stride * f_max}")
    cut = np.float32(cfg.mask_cut)
    quarter = np.float32(0.25)
    levels = []
    cur = heat
    for j in range(cfg.num_scales):
        if j:
            hh, ww, c = cur.shape
            # sum row pairs, then column pairs: both steps read contiguous blocks
            pairs = cur.reshape(hh // 2, 2, ww // 2, 2 * c)
            rows = pairs[:, 0] + pairs[:, 1]
            cur = np.add(rows[..., :c], rows[..., c:])
            cur *= quarter
            f = 2 ** j
            a, b = f // 2 - 1, f // 2                  # the two source cells per axis
            m = (mask[a::f, a::f] + mask[b::f, a::f] + mask[a::f, b::f] + mask[b::f, b::f]) * quarter
        else:
            m = mask.copy()
        m[m < cut] = 0.0
        levels.append({"heatmaps": cur, "mask": m})
    return levels
