"""Rasterising synthetic scenes: backgrounds, figures, textures, camera effects, masks.

Figures are drawn into a uint16 *label map* only (painter's order, far to near,
hard-edged ``cv2.LINE_8`` fills with 4 fractional bits), and the RGB image is
then coloured from it through a per-label lookup table. The label map is thus
the exact record of which part of which figure owns every pixel: keypoint
visibility, segmentation and crowd masks are read from it, and the colour under
a visible keypoint is by construction a colour of that figure (before textures
and camera effects).

Coordinates follow OpenCV drawing: the pixel with index (col i, row j) has its
centre at (i, j), so the pixel under a keypoint (x, y) is
(floor(x + 0.5), floor(y + 0.5)) -- see ``pixel_of``.
"""
from __future__ import annotations

import math

import cv2
import numpy as np

from keras_pose.data._figure import PART

_SHIFT = 4
_ONE = 1 << _SHIFT

SKIN_TONES = np.array([(255, 224, 196), (241, 194, 125), (224, 172, 105), (198, 134, 66),
                       (141, 85, 36), (92, 58, 38), (255, 205, 148), (234, 192, 134)], np.float32)
# Parts that wear clothes (textured); the rest is skin, shoes or markers.
CLOTHING = tuple(PART[n] for n in ("torso", "left_upper_arm", "right_upper_arm", "left_forearm",
                                    "right_forearm", "left_thigh", "right_thigh",
                                    "left_shin", "right_shin"))


def pixel_of(xy) -> np.ndarray:
    """(..., 2) keypoint coordinates -> (..., 2) int64 (col, row) of the pixel under them."""
    return np.floor(np.asarray(xy, np.float64) + 0.5).astype(np.int64)


def _fx(p):
    """Point -> fixed-point int tuple for cv2 drawing with ``shift=_SHIFT``."""
    return (math.floor(float(p[0]) * _ONE + 0.5), math.floor(float(p[1]) * _ONE + 0.5))


def _fx_array(pts) -> np.ndarray:
    return np.floor(np.asarray(pts, np.float64) * _ONE + 0.5).astype(np.int32)


def _disc(lab, c, r, label):
    cv2.circle(lab, _fx(c), max(math.floor(r * _ONE + 0.5), _ONE), label, -1, cv2.LINE_8, _SHIFT)


def draw_prim(lab, label: int, shape: str, params) -> None:
    """Rasterise one primitive of a figure into the uint16 label map.

    capsule (p0, p1, w0, w1): a quad tapering from width w0 to w1 with round ends;
    disc (c, r); ellipse (c, (half-axes), angle deg); poly (points; filled hull).
    Radii never go below one pixel, so a joint always covers the pixel under it.
    """
    if shape == "capsule":
        p0, p1, w0, w1 = params
        dx, dy = float(p1[0] - p0[0]), float(p1[1] - p0[1])
        n = math.hypot(dx, dy)
        if n > 1e-3:
            nx, ny = -dy * 0.5 / n, dx * 0.5 / n
            x0, y0, x1, y1 = float(p0[0]), float(p0[1]), float(p1[0]), float(p1[1])
            quad = ((x0 + nx * w0, y0 + ny * w0), (x1 + nx * w1, y1 + ny * w1),
                    (x1 - nx * w1, y1 - ny * w1), (x0 - nx * w0, y0 - ny * w0))
            cv2.fillConvexPoly(lab, _fx_array(quad), label, cv2.LINE_8, _SHIFT)
        _disc(lab, p0, w0 / 2, label)
        _disc(lab, p1, w1 / 2, label)
    elif shape == "disc":
        _disc(lab, params[0], params[1], label)
    elif shape == "ellipse":
        c, (ax, ay), ang = params
        cv2.ellipse(lab, _fx(c), (max(int(ax * _ONE), _ONE), max(int(ay * _ONE), _ONE)),
                    ang, 0, 360, label, -1, cv2.LINE_8, _SHIFT)
    elif shape == "poly":
        hull = cv2.convexHull(np.asarray(params, np.float32))[:, 0]
        cv2.fillConvexPoly(lab, _fx_array(hull), label, cv2.LINE_8, _SHIFT)
    else:
        raise ValueError(f"unknown primitive shape {shape!r}")


def _hsv_colour(rng, s_range=(0.35, 1.0), v_range=(0.35, 1.0)) -> np.ndarray:
    hsv = np.array([[[rng.uniform(0, 180), rng.uniform(*s_range) * 255,
                      rng.uniform(*v_range) * 255]]], np.float32)
    return cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB)[0, 0].astype(np.float32)


def _dark(c, f=0.55):
    return c * f


def _light(c, f=0.45):
    return c + (255.0 - c) * f


def sample_palette(rng) -> np.ndarray:
    """(num parts, 3) float32 RGB colours of one figure.

    The figure's left limbs are a darker shade and its right limbs a lighter
    shade of the same garment, and joint markers are near-black on the left and
    near-white on the right, so a small network can tell left from right and
    find the joints.
    """
    skin = SKIN_TONES[rng.integers(len(SKIN_TONES))] * rng.uniform(0.9, 1.05)
    shirt, trousers = _hsv_colour(rng), _hsv_colour(rng)
    shoes = _hsv_colour(rng, (0, 0.6), (0.1, 0.6))
    sleeves = shirt if rng.random() < 0.75 else skin
    pal = np.zeros((len(PART), 3), np.float32)
    pal[PART["torso"]] = shirt
    pal[PART["neck"]] = pal[PART["head"]] = skin
    pal[PART["nose"]] = skin * 0.75
    pal[PART["left_eye"]] = pal[PART["right_eye"]] = (35, 25, 25)
    pal[PART["left_ear"]] = pal[PART["right_ear"]] = skin * 0.82
    for side, shade, mark in (("left", _dark, (20, 20, 20)), ("right", _light, (245, 245, 245))):
        pal[PART[f"{side}_upper_arm"]] = shade(shirt)
        pal[PART[f"{side}_forearm"]] = shade(sleeves)
        pal[PART[f"{side}_hand"]] = shade(skin, 0.8) if side == "left" else shade(skin, 0.25)
        pal[PART[f"{side}_thigh"]] = shade(trousers)
        pal[PART[f"{side}_shin"]] = shade(trousers)
        pal[PART[f"{side}_foot"]] = shade(shoes)
        for j in ("elbow", "wrist", "knee", "ankle"):
            pal[PART[f"{side}_{j}_mark"]] = mark
    return np.clip(pal, 0, 255)


def background(rng, h: int, w: int, clutter: int, noise_amp: float) -> np.ndarray:
    """(h, w, 3) float32 RGB: a gradient, low-frequency blotches and clutter shapes."""
    # Built on a coarse grid and upsampled once: a linear gradient stays linear
    # under bilinear resizing, and the blotches come out smooth.
    c0, c1 = _hsv_colour(rng, (0, 0.8), (0.2, 1.0)), _hsv_colour(rng, (0, 0.8), (0.2, 1.0))
    g = int(rng.integers(3, 9))
    ang = rng.uniform(0, 2 * np.pi)
    u = np.linspace(0.0, 1.0, g, dtype=np.float32)
    t = u[None, :] * np.float32(np.cos(ang)) + u[:, None] * np.float32(np.sin(ang))
    t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
    small = c0 + (c1 - c0) * t[..., None]
    if noise_amp > 0:
        small += rng.normal(0, noise_amp, (g, g, 3)).astype(np.float32)
    img = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    for _ in range(int(rng.integers(0, clutter + 1))):
        col = tuple(float(v) for v in _hsv_colour(rng, (0, 1), (0.1, 1)))
        kind = rng.integers(4)
        size = rng.uniform(0.05, 0.35) * min(h, w)
        cx, cy = int(rng.uniform(0, w)), int(rng.uniform(0, h))
        if kind == 0:
            cv2.rectangle(img, (int(cx - size / 2), int(cy - size / 3)),
                          (int(cx + size / 2), int(cy + size / 3)), col, -1)
        elif kind == 1:
            cv2.circle(img, (cx, cy), max(int(size / 3), 1), col, -1)
        elif kind == 2:
            cv2.ellipse(img, (cx, cy), (max(int(size / 2), 1), max(int(size / 5), 1)),
                        float(rng.uniform(0, 180)), 0, 360, col, -1)
        else:
            a = rng.uniform(0, np.pi)
            d = np.array([np.cos(a), np.sin(a)]) * size / 2
            cv2.line(img, (int(cx - d[0]), int(cy - d[1])), (int(cx + d[0]), int(cy + d[1])),
                     col, max(int(size / 12), 1))
    return img


def texture(rng, lab_crop, labels, img_crop, x0: int, y0: int, scale: float) -> None:
    """Modulate the pixels of ``labels`` in a crop by a stripe, check or noise pattern."""
    mask = np.isin(lab_crop, labels)
    if not mask.any():
        return
    h, w = lab_crop.shape
    kind = rng.integers(3)
    amp = rng.uniform(0.12, 0.3)
    period = max(scale * rng.uniform(0.03, 0.08), 2.0)
    ys, xs = np.mgrid[y0:y0 + h, x0:x0 + w].astype(np.float32)
    if kind == 0:
        a = rng.uniform(0, np.pi)
        pat = np.sin(2 * np.pi * (xs * np.cos(a) + ys * np.sin(a)) / period)
    elif kind == 1:
        pat = np.sign(np.sin(np.pi * xs / period) * np.sin(np.pi * ys / period))
    else:
        g = rng.normal(0, 1, (max(int(h / period), 2), max(int(w / period), 2))).astype(np.float32)
        pat = np.clip(cv2.resize(g, (w, h), interpolation=cv2.INTER_LINEAR), -1.5, 1.5)
    img_crop[mask] *= (1.0 + amp * pat[mask])[:, None]


def camera_effects(rng, img, brightness: float, blur_prob: float, noise_std: float) -> np.ndarray:
    """Brightness/contrast jitter, optional Gaussian blur and sensor noise -> uint8."""
    if brightness > 0:
        c = rng.uniform(1 - brightness, 1 + brightness)
        b = rng.uniform(-60, 60) * brightness
        img *= np.float32(c)
        img += np.float32(128.0 * (1 - c) + b)
    if blur_prob > 0 and rng.random() < blur_prob:
        img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.4, 1.2))
    if noise_std > 0 and rng.random() < 0.5:
        # Luminance noise (one field for the three channels): a third of the cost.
        img += (rng.standard_normal(img.shape[:2], np.float32)
                * np.float32(rng.uniform(1, noise_std)))[..., None]
    img += np.float32(0.5)
    return np.clip(img, 0, 255, out=img).astype(np.uint8)


def mask_polygons(mask, x0: int = 0, y0: int = 0) -> list:
    """Outer contours of a binary mask as COCO polygons (flat [x1, y1, x2, y2, ...]).

    Components too thin to give a 3-point contour become their bounding square.
    """
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL,
                                   cv2.CHAIN_APPROX_SIMPLE)
    polys = []
    for c in contours:
        c = c[:, 0].astype(np.float64) + (x0, y0)
        if len(c) < 3:
            lo, hi = c.min(0) - 0.5, c.max(0) + 0.5
            c = np.array([lo, (hi[0], lo[1]), hi, (lo[0], hi[1])])
        polys.append([float(v) if v % 1 else int(v) for v in c.reshape(-1).tolist()])
    return polys


def rle_encode(mask) -> dict:
    """Uncompressed COCO RLE of a binary (H, W) mask (column-major run lengths from 0s)."""
    m = np.asarray(mask, bool)
    flat = m.reshape(-1, order="F")
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    counts = np.diff(bounds).tolist()
    if flat.size and flat[0]:
        counts = [0] + counts
    return {"counts": [int(c) for c in counts], "size": [int(m.shape[0]), int(m.shape[1])]}


def draw_annotations(img, anns, skeleton) -> np.ndarray:
    """RGB uint8 copy of ``img`` with COCO annotations drawn (cv2, for previews).

    Visible keypoints (v = 2) are filled dots, occluded ones (v = 1) rings;
    crowd and keypoint-less persons get a grey box.
    """
    out = img.copy()
    for i, a in enumerate(anns):
        if a["iscrowd"] or a["num_keypoints"] == 0:
            x, y, w, h = a["bbox"]
            cv2.rectangle(out, (int(x), int(y)), (int(x + w), int(y + h)), (160, 160, 160), 1)
            continue
        col = tuple(int(v) for v in cv2.cvtColor(
            np.uint8([[[(i * 37) % 180, 220, 255]]]), cv2.COLOR_HSV2RGB)[0, 0])
        kp = np.asarray(a["keypoints"], np.float64).reshape(-1, 3)
        for s, t in skeleton:
            if kp[s, 2] > 0 and kp[t, 2] > 0:
                cv2.line(out, _fx(kp[s]), _fx(kp[t]), col, 1, cv2.LINE_AA, _SHIFT)
        for x, y, v in kp:
            if v > 0:
                cv2.circle(out, _fx((x, y)), 2 * _ONE, col, -1 if v == 2 else 1,
                           cv2.LINE_AA, _SHIFT)
    return out
