"""A deliberately literal Simple Pose target generator, the yardstick for the fast one.

Transcribes ``docs/method_bottom_up.md`` §2.1-2.6 step by step with plain loops: one
Gaussian window per (keypoint type, person), one box per (limb type, person),
the reference's float32/float64 mix, uint8 masks with an area mean that rounds
half to even, a hand-written 3x3 erosion and a hand-written half-pixel bilinear
resize. It shares nothing with ``keras_pose.codecs._bp_encode`` except the
codec's config and KeypointSpec, so agreement between the two is evidence.

Used by ``tests/test_bp_encode.py`` and timed side by side in
``benchmarks/encode.py``. Shapes: N persons, h x w = H/s x W/s cells.
"""
from __future__ import annotations

import math

import numpy as np

# COCO v -> the authors' internal flag (§2.1): 2 visible -> 1, 1 occluded -> 0, 0 -> 2.
_FLAG = {2: 1, 1: 0, 0: 2}


def _internal_joints(spec, kp: np.ndarray, far: float) -> np.ndarray:
    """COCO (N, K, 3) -> (N, J, 3) float32 [x, y, internal flag], neck synthesised (§2.1)."""
    n = kp.shape[0]
    joints = np.zeros((n, spec.num_internal, 3), np.float32)
    joints[..., 2] = 2
    rsho = spec.internal_names.index("right_shoulder")
    lsho = spec.internal_names.index("left_shoulder")
    for p in range(n):
        for j, c in enumerate(spec.internal_to_coco):
            if c < 0:
                continue
            x, y, v = (float(t) for t in kp[p, c])
            # our bad-input rule: non-finite or absurdly far points are unlabelled
            if not (math.isfinite(x) and math.isfinite(y) and math.isfinite(v)):
                continue
            if abs(x) > far or abs(y) > far:
                continue
            flag = _FLAG[2 if v >= 2 else (1 if v > 0 else 0)]
            joints[p, j] = (x, y, flag)
        for j, c in enumerate(spec.internal_to_coco):
            if c >= 0:
                continue
            if joints[p, rsho, 2] < 2 and joints[p, lsho, 2] < 2:
                joints[p, j, :2] = (joints[p, rsho, :2] + joints[p, lsho, :2]) / 2
                joints[p, j, 2] = min(joints[p, rsho, 2], joints[p, lsho, 2])
    return joints


def _to_u8(mask) -> np.ndarray:
    m = np.asarray(mask)
    if m.ndim == 3:
        m = m[..., 0]
    if m.dtype == np.uint8 and m.max(initial=0) > 1:
        return m.copy()
    m = np.nan_to_num(m.astype(np.float32)) * np.float32(255)
    return np.clip(np.round(m), 0, 255).astype(np.uint8)


def _area_mean_u8(m: np.ndarray, s: int) -> np.ndarray:
    """Exact s x s box mean of a uint8 image, rounded half to even (cv2 INTER_AREA)."""
    h, w = m.shape[0] // s, m.shape[1] // s
    total = m.astype(np.int64).reshape(h, s, w, s).sum(axis=(1, 3))
    return np.round(total / (s * s)).astype(np.uint8)


def _erode3(m: np.ndarray) -> np.ndarray:
    """3x3 min filter; cells outside the image do not take part (OpenCV's default border)."""
    h, w = m.shape
    padded = np.full((h + 2, w + 2), 255, np.uint8)        # 255 never wins a min
    padded[1:-1, 1:-1] = m
    out = m.copy()
    for dr in range(3):
        for dq in range(3):
            out = np.minimum(out, padded[dr:dr + h, dq:dq + w])
    return out


def encode_targets(codec, keypoints, image_size, person_mask=None, ignore_mask=None) -> dict:
    """Literal targets: {"heatmaps": (h, w, C) float32, "mask": (h, w, 1) float32}."""
    cfg, spec = codec.config, codec.spec
    s = cfg.stride
    height, width = int(image_size[0]), int(image_size[1])
    h, w = height // s, width // s
    kp = np.asarray(keypoints, np.float32).reshape(-1, spec.num_keypoints, 3)
    joints = _internal_joints(spec, kp, far=100 * max(height, width))

    # float cell centres in input pixels (§2.3; issue #23)
    grid_x = np.arange(w) * s + s / 2 - 0.5
    grid_y = np.arange(h) * s + s / 2 - 0.5
    heat = np.zeros((h, w, spec.num_channels), np.float32)

    # --- keypoints (§2.3): square window, separable float32 Gaussian, max over persons
    half = math.ceil(math.sqrt(-2 * cfg.sigma ** 2 * math.log(cfg.keypoint_threshold)) / s)
    two_sigma2 = np.array([2 * cfg.sigma * cfg.sigma]).astype(np.float32)
    for j in range(spec.num_internal):
        layer = spec.keypoint_start + j
        for p in range(joints.shape[0]):
            if joints[p, j, 2] >= 2:
                continue
            x, y = joints[p, j, 0], joints[p, j, 1]             # np.float32 scalars
            x_min = int(round(x / s)) - half
            x_max = int(round(x / s)) + half + 1
            y_min = int(round(y / s)) - half
            y_max = int(round(y / s)) + half + 1
            if y_max < 0 or x_max < 0:
                continue
            x_min, y_min = max(x_min, 0), max(y_min, 0)
            sx, sy = slice(x_min, x_max), slice(y_min, y_max)
            ex = np.exp(-(grid_x[sx].astype(np.float32) - x) ** 2 / two_sigma2)
            ey = np.exp(-(grid_y[sy].astype(np.float32) - y) ** 2 / two_sigma2)
            heat[sy, sx, layer] = np.maximum(heat[sy, sx, layer], np.outer(ey, ex))

    # --- body parts (§2.4): distance-to-line band in the box, floor, mean over persons
    m = cfg.limb_margin
    for k in range(spec.num_limbs):
        a, b = spec.limb_from[k], spec.limb_to[k]
        count = np.zeros((h, w), np.float32)
        for p in range(joints.shape[0]):
            if joints[p, a, 2] >= 2 or joints[p, b, 2] >= 2:
                continue
            x1, y1 = joints[p, a, 0], joints[p, a, 1]
            x2, y2 = joints[p, b, 0], joints[p, b, 1]
            if x1 == x2 and y1 == y2:
                continue
            min_x = int(round((min(x1, x2) - m) / s))
            max_x = int(round((max(x1, x2) + m) / s))
            min_y = int(round((min(y1, y2) - m) / s))
            max_y = int(round((max(y1, y2) + m) / s))
            if max_y < 0 or max_x < 0:
                continue
            min_x, min_y = max(min_x, 0), max(min_y, 0)
            sx, sy = slice(min_x, max_x + 1), slice(min_y, max_y + 1)
            gx = grid_x[sx][None, :]
            gy = grid_y[sy][:, None]
            x_d, y_d = x2 - x1, y2 - y1                           # float32
            norm = math.sqrt(x_d ** 2 + y_d ** 2) + 1e-6
            dist = np.abs(x_d * (y1 - gy) - (x1 - gx) * y_d) / norm
            g = np.exp(-dist ** 2 / (2 * cfg.limb_sigma ** 2))
            g[g <= cfg.limb_threshold] = cfg.limb_floor
            heat[sy, sx, k] += g
            count[sy, sx] += 1
        plane = heat[:, :, k]
        plane[count > 0] /= count[count > 0]

    # --- person mask (§2.5): uint8 area resize, 3x3 erosion, / 255
    if person_mask is not None:
        small = _erode3(_area_mean_u8(_to_u8(person_mask), s))
        heat[:, :, spec.person_mask_channel] = small.astype(np.float32) / 255
    # --- max over keypoint channels, then clip everything
    heat[:, :, spec.keypoint_max_channel] = heat[:, :, spec.keypoint_start:spec.person_mask_channel].max(axis=2)
    heat = np.clip(heat, 0, 1)

    # --- loss mask: the authors' mask_miss = 255 - ignore, area-resized, / 255
    if ignore_mask is None:
        mask = np.ones((h, w, 1), np.float32)
    else:
        miss = (255 - _to_u8(ignore_mask).astype(np.int64)).astype(np.uint8)
        mask = (_area_mean_u8(miss, s).astype(np.float32) / 255)[..., None]
    return {"heatmaps": heat, "mask": mask}


def _bilinear_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) weights of a 1-D bilinear resize with half-pixel centres, no antialias."""
    wts = np.zeros((n_out, n_in), np.float64)
    scale = n_in / n_out
    for i in range(n_out):
        src = max((i + 0.5) * scale - 0.5, 0.0)
        i0 = min(int(math.floor(src)), n_in - 1)
        i1 = min(i0 + 1, n_in - 1)
        lam = src - i0
        wts[i, i0] += 1 - lam
        wts[i, i1] += lam
    return wts


def build_pyramid(codec, targets) -> list:
    """Literal §2.6: block means of the targets; bilinear mask with values < cut set to 0."""
    cfg = codec.config
    heat, mask = targets["heatmaps"], targets["mask"][..., 0]
    h, w, c = heat.shape
    levels = []
    for j in range(cfg.num_scales):
        f = 2 ** j
        hj, wj = h // f, w // f
        pooled = heat.reshape(hj, f, wj, f, c).astype(np.float64).mean(axis=(1, 3))
        mj = _bilinear_matrix(h, hj) @ mask.astype(np.float64) @ _bilinear_matrix(w, wj).T
        mj[mj < cfg.mask_cut] = 0
        levels.append({"heatmaps": pooled.astype(np.float32), "mask": mj.astype(np.float32)[..., None]})
    return levels
