"""Video tracking: stable person ids by greedy OKS matching + One-Euro keypoint smoothing.

Shapes: Poses keypoints (P, K, 3) [x, y, score] in image pixels; ids (P,) int.
NumPy only (runtime path; no TensorFlow).

* OKS (COCO keypoint evaluation): exp(-d^2 / (2 s^2 k^2)) averaged over keypoints found in
  both poses, s^2 the area of the older pose's keypoint box, k = 2 * sigma.
* One-Euro filter (Casiez, Roussel, Vogel, CHI 2012): a low-pass filter whose cutoff grows
  with the speed, so still keypoints stop jittering while fast motion lags little.
"""
from __future__ import annotations

import math

import numpy as np

from keras_pose.skeleton import COCO, KeypointSpec
from keras_pose.structures import Poses


def _alpha(cutoff, dt):
    # Smoothing factor of a first-order low-pass filter with this cutoff (Hz) at step dt (s).
    tau = 1.0 / (2 * math.pi * cutoff)
    return 1.0 / (1.0 + tau / dt)


class OneEuroFilter:
    """One-Euro filter over an array of values (e.g. (K, 2) keypoint coordinates).

    Args:
        min_cutoff: cutoff (Hz) at zero speed; lower = smoother when still.
        beta: speed coefficient; higher = less lag when moving.
        d_cutoff: cutoff (Hz) for the derivative estimate.
    """

    def __init__(self, min_cutoff=1.0, beta=0.05, d_cutoff=1.0):
        self.min_cutoff, self.beta, self.d_cutoff = min_cutoff, beta, d_cutoff
        self.x = self.dx = None

    def reset(self):
        self.x = self.dx = None

    def __call__(self, x, dt=1 / 30, valid=None):
        """Filter one sample; ``valid`` (same shape, bool) restarts entries that went missing."""
        x = np.asarray(x, np.float64)
        if self.x is None:
            self.x, self.dx = x.copy(), np.zeros_like(x)
            return x.copy()
        dt = max(float(dt), 1e-6)
        dx = (x - self.x) / dt
        a_d = _alpha(self.d_cutoff, dt)
        dx_hat = a_d * dx + (1 - a_d) * self.dx
        cutoff = self.min_cutoff + self.beta * np.abs(dx_hat)
        a = 1.0 / (1.0 + (1.0 / (2 * math.pi * cutoff)) / dt)
        x_hat = a * x + (1 - a) * self.x
        if valid is not None:
            # A keypoint that reappears starts fresh instead of sliding from a stale place.
            v = np.asarray(valid, bool)
            x_hat = np.where(v, x_hat, x)
            dx_hat = np.where(v, dx_hat, 0.0)
        self.x, self.dx = x_hat, dx_hat
        return x_hat.copy()


def oks(a, b, sigmas) -> float:
    """OKS between two (K, 3) poses; the scale comes from ``b``'s keypoint box area."""
    both = (a[:, 2] > 0) & (b[:, 2] > 0)
    if not both.any():
        return 0.0
    found = b[b[:, 2] > 0, :2]
    area = max(float(np.prod(found.max(0) - found.min(0))), 1.0)
    k = 2 * np.asarray(sigmas, np.float64)[both]
    d2 = np.sum((a[both, :2] - b[both, :2]) ** 2, axis=1)
    return float(np.mean(np.exp(-d2 / (2 * area * k ** 2))))


class PoseTracker:
    """Assign stable ids across frames and smooth keypoints.

    Each frame, persons are matched to live tracks greedily by decreasing OKS (>= ``min_oks``);
    the rest start new tracks. A track unseen for more than ``max_age`` frames is dropped.

    ``tracker.update(poses, dt)`` -> (smoothed Poses, ids (P,) int).
    """

    def __init__(self, spec: KeypointSpec = COCO, min_oks=0.3, max_age=10, smooth=True,
                 min_cutoff=1.0, beta=0.05):
        self.spec, self.min_oks, self.max_age, self.smooth = spec, min_oks, max_age, smooth
        self.filter_args = dict(min_cutoff=min_cutoff, beta=beta)
        self.tracks = {}  # id -> {"kp": (K, 3), "age": frames unseen, "filter": OneEuroFilter}
        self.next_id = 0

    def update(self, poses: Poses, dt: float = 1 / 30):
        ids = np.full(len(poses), -1, np.int64)
        pairs = [(oks(poses.keypoints[i], t["kp"], self.spec.sigmas), i, tid)
                 for i in range(len(poses)) for tid, t in self.tracks.items()]
        pairs.sort(key=lambda p: -p[0])
        taken = set()
        for s, i, tid in pairs:
            if s < self.min_oks:
                break
            if ids[i] < 0 and tid not in taken:
                ids[i] = tid
                taken.add(tid)
        for i in np.flatnonzero(ids < 0):
            ids[i] = self.next_id
            self.tracks[self.next_id] = {"kp": None, "age": 0,
                                         "filter": OneEuroFilter(**self.filter_args)}
            self.next_id += 1
        kp_out = poses.keypoints.copy()
        for i, tid in enumerate(ids):
            t = self.tracks[int(tid)]
            kp = poses.keypoints[i]
            if self.smooth:
                valid = np.repeat((kp[:, 2] > 0)[:, None], 2, axis=1)
                if t["kp"] is not None:
                    valid &= np.repeat((t["kp"][:, 2] > 0)[:, None], 2, axis=1)
                xy = t["filter"](kp[:, :2], dt, valid)
                kp_out[i, :, :2] = np.where(kp[:, 2:] > 0, xy, 0.0)
            t["kp"], t["age"] = kp_out[i].copy(), 0
        for tid in list(self.tracks):
            if tid not in set(ids.tolist()):
                self.tracks[tid]["age"] += 1
                if self.tracks[tid]["age"] > self.max_age:
                    del self.tracks[tid]
        return Poses(kp_out, poses.scores.copy()), ids
