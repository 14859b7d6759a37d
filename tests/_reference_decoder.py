"""A literal, slow reference for the Simple Pose decoder, plus a scene maker.

Shapes: an h x w x C map at stride s, an H x W = s*h x s*w input, K = 17 COCO
keypoints, J = 18 internal points.

``reference_decode`` follows ``docs/method_bottom_up.md`` §5.2 step 7 - §5.6 the way the
authors' ``evaluate.py`` does, deliberately without shortcuts: cv2 bicubic
upsampling of every map to full input resolution, 3x3 NMS with reflect padding
over the whole map, a Python loop over peaks for refinement, a Python loop over
every candidate pair for limb scoring, and the ``subset``-array grouping. It is
our parity oracle for ``keras_pose.codecs._bp_decode`` and the baseline of
``benchmarks/grouping.py``. Written from the method (docs/method_bottom_up.md §5), not from the authors' code.
The one deliberate difference from the authors: the refinement offsets have x
and y the right way round (the production decoder fixes that quirk too).
"""
from __future__ import annotations

import json
import math

import cv2
import numpy as np

from keras_pose.skeleton import COCO


def _nms_peaks(full, thre1):
    """(H, W) map -> [(x, y)] of 3x3 reflect-padded maxima >= thre1, row-major order."""
    padded = np.pad(full, 1, mode="reflect")
    h, w = full.shape
    pooled = np.max([padded[dy:dy + h, dx:dx + w] for dy in range(3) for dx in range(3)], axis=0)
    ys, xs = np.nonzero((full == pooled) & (full >= thre1))
    return list(zip(xs.tolist(), ys.tolist()))


def _refine(full, x, y, radius):
    """Score-weighted centroid and mean over the (2r+1)^2 window, if it fits (§5.3)."""
    h, w = full.shape
    if x - radius < 0 or y - radius < 0 or x + radius + 1 > w or y + radius + 1 > h:
        return float(x), float(y), float(full[y, x])
    box = full[y - radius:y + radius + 1, x - radius:x + radius + 1].astype(np.float64)
    dy, dx = np.mgrid[-radius:radius + 1, -radius:radius + 1]
    total = box.sum()
    if total <= 0:
        return float(x), float(y), float(box.mean())
    return x + (box * dx).sum() / total, y + (box * dy).sum() / total, float(box.mean())


def reference_decode(maps, cfg, spec=COCO, image_height=None, max_candidates=None):
    """(h, w, C) stride-s maps -> (keypoints (P, 17, 3), scores (P,)) in input pixels.

    ``max_candidates`` (None: unlimited, the authors' behaviour) keeps the best
    peaks per type, only so that noise maps finish in reasonable time.
    """
    maps = np.asarray(maps, np.float32)
    s = cfg.stride
    h, w, _ = maps.shape
    big_h, big_w = h * s, w * s
    if image_height is None:
        image_height = big_h
    # §5.2 step 7: full-resolution bicubic upsampling, half-pixel centres.
    nl, nj = spec.num_limbs, spec.num_internal
    k0 = spec.keypoint_start
    paf = cv2.resize(maps[:, :, :nl], (big_w, big_h), interpolation=cv2.INTER_CUBIC)
    heat = cv2.resize(maps[:, :, k0:k0 + nj], (big_w, big_h), interpolation=cv2.INTER_CUBIC)
    # §5.3 peaks
    all_peaks, candidates = [], []
    for part in range(nj):
        full = heat[:, :, part]
        found = [_refine(full, x, y, cfg.refine_radius) for x, y in _nms_peaks(full, cfg.peak_threshold)]
        if max_candidates is not None and len(found) > max_candidates:
            best = sorted(range(len(found)), key=lambda i: -found[i][2])[:max_candidates]
            found = [found[i] for i in sorted(best)]
        peaks = []
        for x, y, sc in found:
            peaks.append((x, y, sc, len(candidates)))
            candidates.append((x, y, sc))
        all_peaks.append(peaks)
    candidates = np.asarray(candidates, np.float64).reshape(-1, 3)
    # §5.4 limb scoring
    connection_all, special = [], []
    for k in range(nl):
        score_mid = paf[:, :, k]
        cand_a, cand_b = all_peaks[spec.limb_from[k]], all_peaks[spec.limb_to[k]]
        if not cand_a or not cand_b:
            special.append(k)
            connection_all.append([])
            continue
        pairs = []
        for i, a in enumerate(cand_a):
            for j, b in enumerate(cand_b):
                vx, vy = b[0] - a[0], b[1] - a[1]
                norm = math.sqrt(vx * vx + vy * vy)
                if norm == 0:
                    continue
                num = min(int(round(norm + 1)), cfg.max_limb_samples)
                xs = np.linspace(a[0], b[0], num=num)
                ys = np.linspace(a[1], b[1], num=num)
                vals = np.array([score_mid[int(round(yy)), int(round(xx))] for xx, yy in zip(xs, ys)])
                score = float(vals.astype(np.float64).sum()) / len(vals) + min(0.5 * image_height / norm - 1, 0)
                ok1 = np.count_nonzero(vals > np.float32(cfg.limb_sample_threshold)) >= cfg.connect_ratio * len(vals)
                if ok1 and score > 0:
                    pairs.append((i, j, score, norm, 0.5 * score + 0.25 * a[2] + 0.25 * b[2]))
        pairs.sort(key=lambda p: p[4], reverse=True)
        conn, used_i, used_j = [], set(), set()
        for i, j, score, norm, _ in pairs:
            if i in used_i or j in used_j:
                continue
            used_i.add(i)
            used_j.add(j)
            conn.append((cand_a[i][3], cand_b[j][3], score, i, j, norm))
            if len(conn) >= min(len(cand_a), len(cand_b)):
                break
        connection_all.append(conn)
    # §5.5 grouping on a (persons, J + 2, 2) table, as the authors do
    subset = -1 * np.ones((0, nj + 2, 2))
    for k in range(nl):
        if k in special:
            continue
        ta, tb = spec.limb_from[k], spec.limb_to[k]
        for ida, idb, sc, _, _, length in connection_all[k]:
            found, idx = 0, [-1, -1]
            for j in range(len(subset)):
                if subset[j][ta][0] == ida or subset[j][tb][0] == idb:
                    if found >= 2:
                        continue
                    idx[found] = j
                    found += 1
            if found == 1:
                j = idx[0]
                if subset[j][tb][0] == -1 and cfg.length_rate * subset[j][-1][1] > length:
                    subset[j][tb] = (idb, sc)
                    subset[j][-1][0] += 1
                    subset[j][-2][0] += candidates[idb, 2] + sc
                    subset[j][-1][1] = max(length, subset[j][-1][1])
                elif subset[j][tb][0] != idb:
                    if subset[j][tb][1] >= sc:
                        pass
                    else:
                        if cfg.length_rate * subset[j][-1][1] <= length:
                            continue
                        subset[j][-2][0] -= candidates[int(subset[j][tb][0]), 2] + subset[j][tb][1]
                        subset[j][tb] = (idb, sc)
                        subset[j][-2][0] += candidates[idb, 2] + sc
                        subset[j][-1][1] = max(length, subset[j][-1][1])
                elif subset[j][tb][0] == idb and subset[j][tb][1] <= sc:
                    subset[j][-2][0] -= candidates[int(subset[j][tb][0]), 2] + subset[j][tb][1]
                    subset[j][tb] = (idb, sc)
                    subset[j][-2][0] += candidates[idb, 2] + sc
                    subset[j][-1][1] = max(length, subset[j][-1][1])
            elif found == 2:
                j1, j2 = idx
                both = ((subset[j1][:-2, 0] >= 0) & (subset[j2][:-2, 0] >= 0))
                if not both.any():
                    m1 = np.min(subset[j1, :-2, 1][subset[j1, :-2, 0] > -1])
                    m2 = np.min(subset[j2, :-2, 1][subset[j2, :-2, 0] > -1])
                    if sc < cfg.connection_tolerance * min(m1, m2) or cfg.length_rate * subset[j1][-1][1] <= length:
                        continue
                    subset[j1][:-2] += subset[j2][:-2] + 1
                    subset[j1][-2:, 0] += subset[j2][-2:, 0]
                    subset[j1][-2][0] += sc
                    subset[j1][-1][1] = max(length, subset[j1][-1][1])
                    subset = np.delete(subset, j2, 0)
                # else: conflict, a no-op with remove_recon = 0
            elif found == 0:
                row = -1 * np.ones((nj + 2, 2))
                row[ta] = (ida, sc)
                row[tb] = (idb, sc)
                row[-1] = (2, length)
                row[-2][0] = candidates[ida, 2] + candidates[idb, 2] + sc
                subset = np.concatenate([subset, row[None]], axis=0)
    keep = [i for i in range(len(subset))
            if subset[i][-1][0] >= cfg.min_parts and subset[i][-2][0] / subset[i][-1][0] >= cfg.min_mean_score]
    subset = subset[keep]
    kps = np.zeros((len(subset), spec.num_keypoints, 3), np.float32)
    for p, person in enumerate(subset):
        for t in range(nj):
            c = spec.internal_to_coco[t]
            if c >= 0 and person[t][0] >= 0:
                kps[p, c] = candidates[int(person[t][0])]
    scores = np.asarray([1 - 1 / person[-2][0] for person in subset], np.float32)
    return kps, scores


# ------------------------------------------------------------------ scenes
def stick_figures(rng, n=12) -> np.ndarray:
    """(n, 17, 3) synthetic upright-ish COCO poses (no data file needed): a stick
    figure jittered by 3 px, every keypoint labelled."""
    base = np.array([[0, -80], [-6, -86], [6, -86], [-14, -82], [14, -82], [-26, -55], [26, -55],
                     [-34, -20], [34, -20], [-38, 12], [38, 12], [-16, 10], [16, 10],
                     [-18, 60], [18, 60], [-20, 110], [20, 110]], np.float32)
    out = np.zeros((n, 17, 3), np.float32)
    out[:, :, :2] = base + rng.normal(0, 3, (n, 17, 2))
    out[:, :, 2] = 2
    return out


def sample_poses(coco_json, spec=COCO, min_labelled=8):
    """Real annotated poses (N, 17, 3) from a COCO keypoints file (>= min_labelled points)."""
    with open(coco_json) as f:
        data = json.load(f)
    kps = [a["keypoints"] for a in data["annotations"]
           if not a.get("iscrowd") and a.get("num_keypoints", 0) >= min_labelled]
    return np.asarray(kps, np.float32).reshape(-1, spec.num_keypoints, 3)


def jittered_scene(rng, poses, num_persons, size=(512, 512), height_range=(140, 300),
                   jitter=2.0, spec=COCO):
    """(num_persons, 17, 3) poses drawn from ``poses``: rescaled, mirrored at random,
    rotated a little, jittered and placed at random (they overlap in crowds)."""
    big_h, big_w = size
    out = np.zeros((num_persons, spec.num_keypoints, 3), np.float32)
    for p in range(num_persons):
        src = poses[rng.integers(len(poses))].copy()
        lab = src[:, 2] > 0
        if rng.random() < 0.5:
            src = src[spec.flip_perm]
            src[:, 0] *= -1
            lab = src[:, 2] > 0
        xy = src[lab, :2]
        centre = (xy.min(0) + xy.max(0)) / 2
        extent = max(float(np.ptp(xy[:, 1])), float(np.ptp(xy[:, 0])), 1.0)
        scale = rng.uniform(*height_range) / extent
        ang = np.deg2rad(rng.uniform(-15, 15))
        rot = np.array([[np.cos(ang), -np.sin(ang)], [np.sin(ang), np.cos(ang)]])
        half = scale * extent / 2
        pos = np.array([rng.uniform(half * 0.5, big_w - half * 0.5), rng.uniform(half, big_h - half)])
        new = (src[:, :2] - centre) * scale @ rot.T + pos + rng.normal(0, jitter, (spec.num_keypoints, 2))
        out[p, :, :2] = np.where(lab[:, None], new, 0)
        out[p, :, 2] = src[:, 2]
    return out
