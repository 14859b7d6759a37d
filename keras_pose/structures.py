"""Poses: the one result type every decoder, runner and evaluator returns.

Imports without TensorFlow.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from keras_pose.geometry import apply_affine, invert_affine


@dataclasses.dataclass
class Poses:
    """Persons found in one image.

    keypoints: (P, K, 3) float32, [x, y, score] per keypoint in COCO order, in
        the pixel frame of whatever produced them (the model input until
        ``transform`` maps them back). A keypoint that was not found has score 0
        and (x, y) = (0, 0).
    scores: (P,) float32 person scores.
    """

    keypoints: np.ndarray
    scores: np.ndarray

    def __post_init__(self):
        kp = np.asarray(self.keypoints, np.float32)
        if kp.size == 0:
            kp = kp.reshape(0, kp.shape[1] if kp.ndim == 3 else 17, 3)
        if kp.ndim != 3 or kp.shape[-1] != 3:
            raise ValueError(f"Poses.keypoints must be (P, K, 3), got shape {kp.shape}")
        sc = np.asarray(self.scores, np.float32).reshape(-1)
        if sc.shape[0] != kp.shape[0]:
            raise ValueError(f"Poses has {kp.shape[0]} persons but {sc.shape[0]} scores")
        self.keypoints, self.scores = kp, sc

    @classmethod
    def empty(cls, num_keypoints: int = 17) -> "Poses":
        return cls(np.zeros((0, num_keypoints, 3), np.float32), np.zeros((0,), np.float32))

    def __len__(self) -> int:
        return int(self.keypoints.shape[0])

    @property
    def num_keypoints(self) -> int:
        return int(self.keypoints.shape[1])

    def transform(self, affine) -> "Poses":
        """Map (x, y) through a (2, 3) affine; missing keypoints stay (0, 0, 0).

        To go from model-input pixels back to the original image, pass the
        inverse of the preprocessing transform (``invert_affine``).
        """
        kp = self.keypoints.copy()
        found = kp[..., 2] > 0
        kp[..., :2] = np.where(found[..., None], apply_affine(kp[..., :2], affine), 0.0)
        return Poses(kp, self.scores.copy())

    def select(self, index) -> "Poses":
        """A subset of persons (boolean mask or integer indices)."""
        return Poses(self.keypoints[index], self.scores[index])

    def sorted(self) -> "Poses":
        """Persons by decreasing score."""
        return self.select(np.argsort(-self.scores, kind="stable"))

    def to_coco(self, image_id: int, category_id: int = 1) -> list:
        """COCO results-format dicts (one per person).

        Found keypoints are written with v = 1, missing ones as (0, 0, 0)
        (``docs/method_bottom_up.md`` §5.6); COCOeval ignores v of detections.
        """
        out = []
        for kp, s in zip(self.keypoints, self.scores):
            found = kp[:, 2] > 0
            flat = np.stack([np.where(found, kp[:, 0], 0), np.where(found, kp[:, 1], 0),
                             found.astype(np.float32)], axis=1).reshape(-1)
            out.append({"image_id": int(image_id), "category_id": int(category_id),
                        "keypoints": [round(float(v), 2) for v in flat], "score": float(s)})
        return out
