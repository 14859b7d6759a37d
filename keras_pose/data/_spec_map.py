"""Relabel the synthetic figures' COCO keypoints with another human KeypointSpec.

Shapes: (17, 3) COCO keypoints [x, y, v] of one figure -> (K, 3) in the spec's
order.

The synthetic figures are drawn from the 17 COCO joints (``_figure``). A spec's
keypoint maps onto them by name:

* a COCO name (left_shoulder, ..., nose): copied;
* neck / thorax: the midpoint of the shoulders; pelvis (mid_hip, hip_center):
  of the hips;
* head / head_top / top_head: the crown, extrapolated from the shoulders
  through the head centre (the ears, else the eyes) by 0.58 of that distance
  (the figure's skull half-height over its neck-to-head-centre length);
  upper_neck: 0.45 of the way from the shoulders to the head centre.

A derived point takes the lowest visibility of the points it comes from, and
v = 0 when one is missing. The head points are approximate (the figures have no
labelled crown); they are good enough to train and test the pipeline on
CrowdPose's or MPII's layout, not to measure head accuracy. Specs with other
names (animals) cannot be drawn: ``check_spec`` says so in one line.
"""
from __future__ import annotations

import numpy as np

from keras_pose.keypoint_specs import COCO_KEYPOINT_NAMES

_C = {n: i for i, n in enumerate(COCO_KEYPOINT_NAMES)}
_SHOULDERS = (_C["left_shoulder"], _C["right_shoulder"])
_HIPS = (_C["left_hip"], _C["right_hip"])
_EARS = (_C["left_ear"], _C["right_ear"])
_EYES = (_C["left_eye"], _C["right_eye"])
_ALIASES = {"neck": "neck", "thorax": "neck", "pelvis": "pelvis", "mid_hip": "pelvis",
            "hip_center": "pelvis", "head": "crown", "head_top": "crown", "top_head": "crown",
            "upper_neck": "upper_neck"}
CROWN, UPPER_NECK = 0.58, 0.45


def unmapped(spec) -> list:
    """Names of ``spec``'s keypoints that the synthetic figures cannot provide."""
    return [n for n in spec.names if n not in _C and n not in _ALIASES]


def check_spec(spec) -> None:
    """Raise a one-line ValueError when the synthetic set cannot be labelled with ``spec``."""
    lost = unmapped(spec)
    if lost:
        raise ValueError(
            f"keypoint spec {spec.name!r}: the synthetic set draws people and has no "
            f"{', '.join(lost[:4])}{' ...' if len(lost) > 4 else ''}; train on your own "
            "COCO-format data (--dataset coco with --annotations and --images_dir)")


def _mid(kp, idx):
    p = kp[list(idx)]
    if (p[:, 2] <= 0).any():
        return np.zeros(3)
    return np.array([p[:, 0].mean(), p[:, 1].mean(), p[:, 2].min()])


def _head_centre(kp):
    for idx in (_EARS, _EYES):
        p = kp[list(idx)]
        ok = p[:, 2] > 0
        if ok.any():
            return np.array([p[ok, 0].mean(), p[ok, 1].mean(), p[ok, 2].min()])
    return np.zeros(3)


def _along(a, b, t):
    """The point a + t (b - a), visibility the lower of the two; (0, 0, 0) if one is missing."""
    if a[2] <= 0 or b[2] <= 0:
        return np.zeros(3)
    return np.array([*(a[:2] + t * (b[:2] - a[:2])), min(a[2], b[2])])


def relabel(coco_kp, spec) -> np.ndarray:
    """(17, 3) COCO keypoints of one figure -> (K, 3) float64 in ``spec``'s order."""
    kp = np.asarray(coco_kp, np.float64).reshape(len(COCO_KEYPOINT_NAMES), 3)
    neck = _mid(kp, _SHOULDERS)
    derived = {"neck": neck, "pelvis": _mid(kp, _HIPS)}
    head = _head_centre(kp)
    derived["crown"] = _along(neck, head, 1.0 + CROWN)
    derived["upper_neck"] = _along(neck, head, UPPER_NECK)
    out = np.zeros((spec.num_keypoints, 3))
    for k, n in enumerate(spec.names):
        out[k] = kp[_C[n]] if n in _C else derived[_ALIASES[n]]
    return out


def relabel_annotations(anns: list, spec) -> list:
    """COCO annotation dicts of the synthetic figures, relabelled with ``spec`` (copies)."""
    out = []
    for a in anns:
        kp = relabel(np.asarray(a["keypoints"], np.float64), spec)
        a = dict(a)
        a["keypoints"] = [round(float(v), 2) if c < 2 else int(v)
                          for row in kp for c, v in enumerate(row)]
        a["num_keypoints"] = int((kp[:, 2] > 0).sum()) if a.get("num_keypoints", 0) else 0
        out.append(a)
    return out
