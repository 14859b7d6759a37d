"""Composing one synthetic scene: figure layout, depth order, drawing and COCO annotations.

Figures get a posture, a standing height (log-uniform between the configured
fractions of the image height), a place (free, against an earlier figure so
that they overlap, or across the border) and a depth key (larger is nearer,
with jitter); an optional crowd is a row of small figures behind them. They are
drawn far to near into the label map (``_render``), and every annotation is
read back from that map, so visibility, areas and masks agree with the pixels.
"""
from __future__ import annotations

import numpy as np

from keras_pose.data import _figure as fig_mod
from keras_pose.data import _render as rnd


def _new_figure(rng, cfg, posture, scale):
    ang = fig_mod.sample_angles(rng, posture, cfg.back_view_prob, cfg.profile_prob)
    body = fig_mod.sample_body(rng)
    pts, extra, normals = fig_mod.pose_points(body, ang)
    ext = np.concatenate([pts[:, :2], np.stack([extra[k][:2] for k in
                          ("head_c", "left_hand", "right_hand", "left_toe", "right_toe")])])
    # Margin beyond the joints: the widest part half-width (trunk depth, thigh) at the
    # broadest build, and the 1-pixel minimum radius of tiny figures.
    lo, hi = ext.min(0) * scale - 0.1 * scale - 2, ext.max(0) * scale + 0.1 * scale + 2
    return {"posture": posture, "angles": ang, "body": body, "pts": pts, "extra": extra,
            "face_visible": fig_mod.face_visible(normals), "scale": float(scale),
            "lo": lo, "hi": hi, "crowd": False, "unannotated": False}


def _centre_range(size, extent, may_cross):
    """Allowed centre interval along one axis for a box of ``extent`` pixels."""
    slack = 0.35 * extent if may_cross else 0.0
    lo, hi = extent / 2 - slack, size - extent / 2 + slack
    return (lo, hi) if lo <= hi else ((lo + hi) / 2, (lo + hi) / 2)


def _place(rng, f, placed, h, w, cfg):
    size = f["hi"] - f["lo"]
    may_cross = rng.random() < cfg.truncation
    (xl, xh), (yl, yh) = _centre_range(w, size[0], may_cross), _centre_range(h, size[1], may_cross)
    if placed and rng.random() < cfg.overlap:
        o = placed[int(rng.integers(len(placed)))]
        osz = o["hi"] - o["lo"]
        oc = o["off"] + (o["lo"] + o["hi"]) / 2
        c = oc + np.array([rng.choice([-1, 1]) * rng.uniform(0.2, 0.8) * max(osz[0], size[0]),
                           rng.uniform(-0.25, 0.25) * osz[1]])
        c = np.clip(c, (xl, yl), (xh, yh))
    else:
        c = np.array([rng.uniform(xl, xh), rng.uniform(yl, yh)])
    f["off"] = c - (f["lo"] + f["hi"]) / 2


def sample_figures(rng, h, w, cfg):
    weights = np.asarray(cfg.posture_weights, float)
    weights = weights / weights.sum()
    n = int(rng.integers(cfg.min_figures, cfg.max_figures + 1))
    figs = []
    for _ in range(n):
        height = np.exp(rng.uniform(np.log(cfg.min_height), np.log(cfg.max_height))) * h
        f = _new_figure(rng, cfg, fig_mod.POSTURES[rng.choice(len(weights), p=weights)], height)
        _place(rng, f, figs, h, w, cfg)
        # Like COCO's, the unannotated people are mostly the small ones: figures under
        # a quarter of the image height are twice as likely, larger ones a quarter as.
        p_skip = cfg.unannotated_prob * (2.0 if height < 0.25 * h else 0.25)
        f["unannotated"] = bool(rng.random() < min(p_skip, 1.0))
        f["depth"] = float(np.log(height) + rng.normal(0, 0.2))
        figs.append(f)
    if rng.random() < cfg.crowd_prob:
        m = int(rng.integers(cfg.crowd_size[0], cfg.crowd_size[1] + 1))
        base = rng.uniform(0.06, 0.14) * h
        cx, cy = rng.uniform(0.2, 0.8) * w, rng.uniform(0.3, 0.8) * h
        span = rng.uniform(0.2, 0.45) * w
        for _ in range(m):
            f = _new_figure(rng, cfg, ("stand", "walk", "arms_up")[int(rng.integers(3))],
                            base * rng.uniform(0.85, 1.15))
            c = np.array([cx + rng.uniform(-0.5, 0.5) * span, cy + rng.uniform(-0.08, 0.08) * h])
            f["off"] = c - (f["lo"] + f["hi"]) / 2
            f["crowd"] = True
            f["depth"] = float(np.log(f["scale"]) - 0.5 + rng.normal(0, 0.05))
            figs.append(f)
    figs.sort(key=lambda f: f["depth"])   # painter's order: far first
    return figs


def annotation(lab, f, h, w, cfg):
    """COCO annotation dict of one drawn figure, or None when too little of it shows.

    A figure is dropped only when fewer than ``cfg.min_area`` of its pixels show
    *and* none of its joints is visible, so every visible joint is annotated.
    """
    start, end = f["labels"]
    x0, y0 = np.maximum(np.floor(f["off"] + f["lo"]).astype(int), 0)
    x1, y1 = np.minimum(np.ceil(f["off"] + f["hi"]).astype(int) + 1, (w, h))
    if x1 <= x0 or y1 <= y0:
        return None
    crop = lab[y0:y1, x0:x1]
    mask = (crop >= start) & (crop < end)
    area = int(mask.sum())
    kps = np.zeros((fig_mod.K, 3))
    xy = np.round(f["xy"], 2)
    px = rnd.pixel_of(xy)
    for k in range(fig_mod.K):
        (i, j) = px[k]
        if not (0 <= i < w and 0 <= j < h) or not f["face_visible"][k]:
            continue
        kps[k] = (xy[k, 0], xy[k, 1], 2 if int(lab[j, i]) in f["owners"][k] else 1)
    if area == 0 or (area < cfg.min_area and not (kps[:, 2] == 2).any()):
        return None
    if f["unannotated"]:
        kps[:] = 0
    ys, xs = np.nonzero(mask)
    return {
        "keypoints": [round(float(v), 2) if c < 2 else int(v)
                      for row in kps for c, v in enumerate(row)],
        "num_keypoints": int((kps[:, 2] > 0).sum()),
        "area": area,
        "iscrowd": 0,
        "bbox": [int(x0 + xs.min()), int(y0 + ys.min()),
                 int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)],
        "category_id": 1,
        "segmentation": rnd.mask_polygons(mask, x0, y0),
    }


def crowd_annotation(crowd_mask):
    ys, xs = np.nonzero(crowd_mask)
    return {"keypoints": [0] * (3 * fig_mod.K), "num_keypoints": 0, "area": int(len(xs)),
            "iscrowd": 1,
            "bbox": [int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1),
                     int(ys.max() - ys.min() + 1)],
            "category_id": 1, "segmentation": rnd.rle_encode(crowd_mask)}


def compose(rng, h: int, w: int, cfg, return_info: bool = False):
    """(image (h, w, 3) uint8 RGB, annotations[, info]); see ``synthetic.make_scene``."""
    img = rnd.background(rng, h, w, cfg.clutter, cfg.background_noise)
    figs = sample_figures(rng, h, w, cfg)
    lab = np.zeros((h, w), np.uint16)
    parts = [(-1, -1)]
    colours = [np.zeros(3, np.float32)]
    for fi, f in enumerate(figs):
        f["xy"], units = fig_mod.figure_units(f["pts"], f["extra"], f["face_visible"], f["body"],
                                              f["scale"], f["off"])
        pal = rnd.sample_palette(rng)
        start = len(parts)
        by_kind = {}
        for u in units:
            for kind, shape, params in u.prims:
                label = len(parts)
                rnd.draw_prim(lab, label, shape, params)
                parts.append((fi, kind))
                colours.append(pal[kind])
                by_kind[kind] = label
        f["labels"] = (start, len(parts))
        f["owners"] = [frozenset(by_kind[p] for p in own if p in by_kind)
                       for own in fig_mod.KEYPOINT_OWNERS]
    if len(parts) > np.iinfo(np.uint16).max:
        raise ValueError("too many primitives for a uint16 label map; lower max_figures")
    lut = np.asarray(colours, np.float32)
    parts = np.asarray(parts, np.int64)
    drawn = lab > 0
    img[drawn] = lut[lab[drawn]]
    clothing = np.isin(parts[:, 1], rnd.CLOTHING)
    for f in figs:
        if rng.random() >= cfg.texture_prob:
            continue
        x0, y0 = np.maximum(np.floor(f["off"] + f["lo"]).astype(int), 0)
        x1, y1 = np.minimum(np.ceil(f["off"] + f["hi"]).astype(int) + 1, (w, h))
        if x1 > x0 and y1 > y0:
            ids = np.arange(*f["labels"])
            rnd.texture(rng, lab[y0:y1, x0:x1], ids[clothing[ids]], img[y0:y1, x0:x1],
                        x0, y0, f["scale"])
    image = rnd.camera_effects(rng, img, cfg.brightness, cfg.blur_prob, cfg.noise_std)
    anns = []
    for f in figs:
        f["annotation"] = None
        if f["crowd"]:
            continue
        a = annotation(lab, f, h, w, cfg)
        if a is not None:
            f["annotation"] = len(anns)
            anns.append(a)
    crowd_ids = np.zeros(len(parts), bool)
    for fi, f in enumerate(figs):
        if f["crowd"]:
            crowd_ids[f["labels"][0]:f["labels"][1]] = True
    if crowd_ids.any():
        crowd_mask = crowd_ids[lab]
        if crowd_mask.sum() >= cfg.min_area:
            anns.append(crowd_annotation(crowd_mask))
    if not return_info:
        return image, anns
    keep = ("xy", "face_visible", "owners", "labels", "crowd", "unannotated", "posture",
            "scale", "annotation")
    info = {"labels": lab, "parts": parts, "colours": np.clip(lut + 0.5, 0, 255).astype(np.uint8),
            "figures": [{k: f[k] for k in keep} for f in figs]}
    return image, anns, info


