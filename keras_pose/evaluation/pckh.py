"""PCKh: MPII's metric (Andriluka et al., CVPR 2014), for MPII-format data.

Shapes: G ground-truth persons, P predicted persons, K = 16 MPII joints
(``keras_pose.keypoint_specs.MPII_SPEC`` order).

A predicted joint is correct when it lies within ``threshold`` (0.5 for
PCKh@0.5) of the person's head size from the ground truth, where the head size
is 0.6 x the diagonal of the annotated head box (the ``SC_BIAS`` of the MPII
evaluation code). Only joints labelled visible in the ground truth count. The
summary follows the usual table (as in SimpleBaseline / HRNet's MPII
evaluation): Head is the head top, each other entry the mean of its left and
right joints, and Mean the average over all joints except pelvis and thorax,
weighted by how many of each are labelled.

MPII-format annotations (``load_mpii``): a JSON list with one entry per person,
``{"image": file name, "joints": [[x, y] x 16], "joints_vis": [0/1 x 16],
"headbox": [x1, y1, x2, y2]}`` (0-based pixels; the layout of the common MPII
JSON conversions, with each person's head box added from the dataset's
annotation file). Bottom-up predictions (several persons per image, no
correspondence) are first matched to the ground truth (``match_persons``).
Imports without TensorFlow.
"""
from __future__ import annotations

import json

import numpy as np

SC_BIAS = 0.6
MPII_JOINTS = ("right_ankle", "right_knee", "right_hip", "left_hip", "left_knee", "left_ankle",
               "pelvis", "thorax", "upper_neck", "head_top", "right_wrist", "right_elbow",
               "right_shoulder", "left_shoulder", "left_elbow", "left_wrist")
_GROUPS = (("Head", ("head_top",)), ("Shoulder", ("left_shoulder", "right_shoulder")),
           ("Elbow", ("left_elbow", "right_elbow")), ("Wrist", ("left_wrist", "right_wrist")),
           ("Hip", ("left_hip", "right_hip")), ("Knee", ("left_knee", "right_knee")),
           ("Ankle", ("left_ankle", "right_ankle")))
_NOT_IN_MEAN = ("pelvis", "thorax")


def head_sizes(head_boxes) -> np.ndarray:
    """(G, 4) [x1, y1, x2, y2] head boxes -> (G,) head sizes 0.6 * box diagonal."""
    b = np.asarray(head_boxes, np.float64).reshape(-1, 4)
    return SC_BIAS * np.linalg.norm(b[:, 2:] - b[:, :2], axis=1)


def correct_joints(pred, gt, visible, sizes, threshold: float = 0.5) -> np.ndarray:
    """(G, K) bool: prediction within ``threshold`` x head size of a visible GT joint.

    pred: (G, K, 2) or (G, K, 3) (a joint with score <= 0 is missing: never correct).
    """
    pred = np.asarray(pred, np.float64)
    gt = np.asarray(gt, np.float64)[..., :2]
    found = pred[..., 2] > 0 if pred.shape[-1] == 3 else np.ones(pred.shape[:2], bool)
    dist = np.linalg.norm(pred[..., :2] - gt, axis=-1)
    return (dist <= threshold * np.asarray(sizes, np.float64)[:, None]) & found & \
        np.asarray(visible, bool)


def pckh(pred, gt, visible, head_boxes, threshold: float = 0.5, names=MPII_JOINTS) -> dict:
    """PCKh (%) of predictions already paired with the ground truth, person by person.

    Args:
        pred: (G, K, 2|3) predictions, row g for GT person g (missing: score 0).
        gt: (G, K, 2) ground truth; visible: (G, K) labels that count.
        head_boxes: (G, 4) [x1, y1, x2, y2].
        names: (K,) joint names (MPII's by default) for the summary.
    Returns:
        {"per_joint": {name: %}, "Head", "Shoulder", ..., "Ankle", "Mean", "threshold",
        "num_joints"}; a joint never labelled reads NaN.
    """
    visible = np.asarray(visible, bool)
    if len(visible) == 0:
        raise ValueError("PCKh needs at least one ground-truth person")
    ok = correct_joints(pred, gt, visible, head_sizes(head_boxes), threshold)
    count = visible.sum(0).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        per = 100.0 * ok.sum(0) / count
    out = {"per_joint": {n: float(v) for n, v in zip(names, per)}}
    for group, joints in _GROUPS:
        if all(j in names for j in joints):
            out[group] = float(np.mean([per[names.index(j)] for j in joints]))
    use = np.array([n not in _NOT_IN_MEAN for n in names]) & (count > 0)
    out["Mean"] = float(100.0 * ok.sum(0)[use].sum() / count[use].sum())
    out["threshold"] = float(threshold)
    out["num_joints"] = int(count.sum())
    return out


def match_persons(pred, gt, visible, sizes, threshold: float = 0.5) -> np.ndarray:
    """(G,) index of the prediction paired with each GT person (-1: none), one to one.

    Pairs are taken greedily by the number of correct joints, then by the mean
    head-normalised distance over the visible joints (bottom-up output has no
    person correspondence; MPII's single-person protocol would give it).
    """
    pred = np.asarray(pred, np.float64).reshape(-1, np.shape(gt)[1], np.shape(pred)[-1])
    G, P = len(gt), len(pred)
    out = np.full(G, -1, np.int64)
    if P == 0 or G == 0:
        return out
    gt_r = np.repeat(np.asarray(gt, np.float64)[:, None], P, 1)           # (G, P, K, 2)
    pr_r = np.repeat(pred[None], G, 0)                                     # (G, P, K, 3)
    vis = np.repeat(np.asarray(visible, bool)[:, None], P, 1)
    sz = np.repeat(np.asarray(sizes, np.float64)[:, None], P, 1)
    hits = correct_joints(pr_r.reshape(G * P, -1, pred.shape[-1]), gt_r.reshape(G * P, -1, 2),
                          vis.reshape(G * P, -1), sz.reshape(-1), threshold).reshape(G, P, -1)
    dist = np.linalg.norm(pr_r[..., :2] - gt_r, axis=-1) / np.maximum(sz[..., None], 1e-9)
    mean_d = np.where(vis, dist, 0).sum(-1) / np.maximum(vis.sum(-1), 1)
    order = sorted(((-int(hits[g, p].sum()), float(mean_d[g, p]), g, p)
                    for g in range(G) for p in range(P)))
    used = set()
    for _, _, g, p in order:
        if out[g] < 0 and p not in used:
            out[g] = p
            used.add(p)
    return out


def load_mpii(path) -> list:
    """Read MPII-format annotations (module docstring); one-line errors naming the file."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except OSError as e:
        raise ValueError(f"{path}: cannot read MPII annotations ({e.strerror})") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(data, list):
        raise ValueError(f"{path}: MPII-format annotations are a JSON list of persons")
    for i, a in enumerate(data):
        missing = [k for k in ("image", "joints", "joints_vis", "headbox") if k not in a]
        if missing:
            raise ValueError(f"{path}: person {i} lacks {', '.join(missing)}")
        if np.shape(a["joints"]) != (len(MPII_JOINTS), 2) or len(a["joints_vis"]) != len(MPII_JOINTS):
            raise ValueError(f"{path}: person {i} must have {len(MPII_JOINTS)} joints [x, y] "
                             f"and as many joints_vis")
    return data


def evaluate_pckh(poses_by_image, annotations, threshold: float = 0.5) -> dict:
    """PCKh of bottom-up predictions against MPII-format annotations.

    Args:
        poses_by_image: {image file name: Poses (or (P, 16, 3) array)}; images
            absent here count as all joints missed.
        annotations: a ``load_mpii`` list or the path of such a file.
    """
    if not isinstance(annotations, list):
        annotations = load_mpii(annotations)
    by_image = {}
    for a in annotations:
        by_image.setdefault(a["image"], []).append(a)
    k = len(MPII_JOINTS)
    preds, gts, vis, boxes = [], [], [], []
    for image, persons in by_image.items():
        gt = np.asarray([a["joints"] for a in persons], np.float64)
        v = np.asarray([a["joints_vis"] for a in persons], bool)
        hb = np.asarray([a["headbox"] for a in persons], np.float64)
        p = poses_by_image.get(image)
        p = np.zeros((0, k, 3)) if p is None else np.asarray(getattr(p, "keypoints", p), np.float64)
        if p.size and p.shape[1:] != (k, 3):
            raise ValueError(f"predictions for {image} must be (P, {k}, 3), got {p.shape}")
        idx = match_persons(p, gt, v, head_sizes(hb), threshold)
        paired = np.zeros((len(gt), k, 3))
        paired[idx >= 0] = p[idx[idx >= 0]]
        preds.append(paired)
        gts.append(gt)
        vis.append(v)
        boxes.append(hb)
    return pckh(np.concatenate(preds), np.concatenate(gts), np.concatenate(vis),
                np.concatenate(boxes), threshold)


def evaluate_predictor_pckh(predictor, annotations, images_dir, threshold: float = 0.5,
                            max_images=None, batch_size: int = 8) -> dict:
    """Run a predictor (``.predict(list of images) -> list of Poses``, e.g. PosePredictor
    or ``keras_pose.load``'s) on every image of MPII-format ``annotations`` and score it.

    Images are taken in sorted file-name order; ``max_images`` keeps the first N
    (their persons only). An unreadable image counts as all joints missed.
    """
    import logging
    import os

    from keras_pose.io import ImageReadError, load_image

    if not isinstance(annotations, list):
        annotations = load_mpii(annotations)
    names = sorted({a["image"] for a in annotations})[:max_images]
    poses = {}
    for start in range(0, len(names), batch_size):
        chunk, images = [], []
        for n in names[start:start + batch_size]:
            try:
                images.append(load_image(os.path.join(images_dir, n)))
                chunk.append(n)
            except ImageReadError as e:
                logging.getLogger(__name__).warning("skipping %s", e)
        if images:
            poses.update(zip(chunk, predictor.predict(images)))
    keep = set(names)
    stats = evaluate_pckh(poses, [a for a in annotations if a["image"] in keep], threshold)
    stats["num_images"] = len(names)
    return stats


def format_pckh(stats: dict) -> str:
    """One-line table: Head Shoulder Elbow Wrist Hip Knee Ankle Mean."""
    cols = [g for g, _ in _GROUPS] + ["Mean"]
    return " | ".join(f"{c} {stats[c]:.1f}" for c in cols if c in stats) + \
        f"  (PCKh@{stats['threshold']:g})"
