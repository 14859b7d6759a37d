"""Top-down post-processing shared by every predictor: rescoring and OKS-NMS.

Shapes: P persons, K keypoints; keypoints (P, K, 3) [x, y, score] in image pixels.

The SimpleBaseline/HRNet protocol (``docs/method_top_down.md`` §5.3): a pose's
score is its box score times the mean of its keypoint confidences above 0.2,
then greedy non-maximum suppression by OKS at 0.9 per image. The OKS here is
ordinary post-processing; AP comes from pycocotools' COCOeval only.
NumPy only.
"""
from __future__ import annotations

import numpy as np

__all__ = ["KEYPOINT_SCORE_THRESHOLD", "OKS_NMS_THRESHOLD", "oks_nms", "rescore"]

KEYPOINT_SCORE_THRESHOLD = 0.2   # SimpleBaseline's in_vis_thre
OKS_NMS_THRESHOLD = 0.9


def rescore(keypoints, box_scores, threshold: float = KEYPOINT_SCORE_THRESHOLD) -> np.ndarray:
    """(P,) person scores = box score x mean of keypoint confidences above ``threshold``
    (0 when none is above)."""
    conf = np.asarray(keypoints, np.float64)[..., 2]
    above = conf > threshold
    n = above.sum(axis=-1)
    mean = np.where(n > 0, (conf * above).sum(axis=-1) / np.maximum(n, 1), 0.0)
    return (mean * np.asarray(box_scores, np.float64)).astype(np.float32)


def oks_nms(keypoints, scores, areas, sigmas, threshold: float = OKS_NMS_THRESHOLD) -> np.ndarray:
    """Greedy non-maximum suppression of poses by OKS; returns kept indices (best first).

    Args:
        keypoints: (P, K, 3) [x, y, score] in image pixels.
        scores: (P,) person scores; areas: (P,) box areas (pixels^2).
        sigmas: (K,) OKS sigmas; threshold: suppress OKS > threshold.

    OKS between poses a, b (COCO's formula, as in SimpleBaseline's oks_nms):
    mean_k exp(-d_k^2 / (2 * s * (2 sigma_k)^2)) with s the mean of the areas.
    """
    kp = np.asarray(keypoints, np.float64)
    sc = np.asarray(scores, np.float64).reshape(-1)
    ar = np.asarray(areas, np.float64).reshape(-1)
    if kp.shape[0] == 0:
        return np.zeros((0,), np.int64)
    var = (2.0 * np.asarray(sigmas, np.float64)) ** 2                     # (K,)
    order = np.argsort(-sc, kind="stable")
    keep = []
    while order.size:
        i, rest = order[0], order[1:]
        keep.append(int(i))
        if not rest.size:
            break
        d2 = ((kp[rest, :, :2] - kp[i, None, :, :2]) ** 2).sum(-1)         # (R, K)
        s = (ar[rest] + ar[i]) / 2.0 + np.spacing(1)
        oks = np.exp(-d2 / var[None, :] / s[:, None] / 2.0).mean(axis=1)
        order = rest[oks <= threshold]
    return np.asarray(keep, np.int64)
