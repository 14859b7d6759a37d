"""KeypointSpec: the single source of truth for keypoints, body parts and channels.

Two orders live here:

* COCO's 17 keypoints (what annotations, results files and ``Poses`` use);
* the Simple Pose internal order of 18 points (CMU/OpenPose order with a neck
  synthesised from the shoulders), which the bottom-up maps use
  (Li et al., "Simple Pose", AAAI 2020; ``docs/method_bottom_up.md`` §1).

The bottom-up output has ``num_channels`` = 50 channels per scale:
0..29 body parts (17 tree limbs + 13 redundant), 30..47 keypoints (internal
order), 48 person mask, 49 max over the keypoint channels (§1.3).

Nothing here imports TensorFlow.
"""
from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

COCO_KEYPOINT_NAMES = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear",
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow",
    "left_wrist", "right_wrist", "left_hip", "right_hip",
    "left_knee", "right_knee", "left_ankle", "right_ankle",
)
# OKS per-keypoint sigmas used by pycocotools (COCO keypoint evaluation).
COCO_SIGMAS = (
    0.026, 0.025, 0.025, 0.035, 0.035, 0.079, 0.079, 0.072, 0.072,
    0.062, 0.062, 0.107, 0.107, 0.087, 0.087, 0.089, 0.089,
)
COCO_FLIP_PAIRS = ((1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16))
# COCO's drawing skeleton, 0-based (the annotation file lists it 1-based).
COCO_SKELETON = (
    (15, 13), (13, 11), (16, 14), (14, 12), (11, 12), (5, 11), (6, 12), (5, 6),
    (5, 7), (6, 8), (7, 9), (8, 10), (1, 2), (0, 1), (0, 2), (1, 3), (2, 4),
    (3, 5), (4, 6),
)

# Internal 18-point order (§1.1); the value is the COCO index, -1 for the neck.
INTERNAL_NAMES = (
    "nose", "neck", "right_shoulder", "right_elbow", "right_wrist",
    "left_shoulder", "left_elbow", "left_wrist", "right_hip", "right_knee",
    "right_ankle", "left_hip", "left_knee", "left_ankle", "right_eye",
    "left_eye", "right_ear", "left_ear",
)
INTERNAL_TO_COCO = (0, -1, 6, 8, 10, 5, 7, 9, 12, 14, 16, 11, 13, 15, 2, 1, 4, 3)

# The 30 body parts (§1.2), from -> to in the internal order; processing order matters.
LIMB_FROM = (1, 1, 1, 1, 1, 0, 0, 14, 15, 1, 2, 3, 1, 5, 6, 1, 8, 9, 1, 11, 12, 0, 0, 2, 8, 5, 11, 16, 17, 8)
LIMB_TO = (0, 14, 15, 16, 17, 14, 15, 16, 17, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 2, 5, 8, 12, 11, 9, 2, 5, 11)
REDUNDANT_LIMBS = (1, 2, 3, 4, 21, 22, 23, 24, 25, 26, 27, 28, 29)
DRAW_LIMBS = (0,) + tuple(range(5, 21)) + (29,)

# Flip permutations (§1.4): channel c of the mirrored image's map holds channel perm[c].
LIMB_FLIP_PERM = (0, 2, 1, 4, 3, 6, 5, 8, 7, 12, 13, 14, 9, 10, 11, 18, 19, 20, 15, 16, 17, 22, 21, 25, 26, 23, 24, 28, 27, 29)
KEYPOINT_FLIP_PERM = (0, 1, 5, 6, 7, 2, 3, 4, 11, 12, 13, 8, 9, 10, 15, 14, 17, 16, 18, 19)


def _as_tuple(x):
    return tuple(tuple(v) if isinstance(v, (list, tuple)) else v for v in x)


@dataclasses.dataclass(frozen=True)
class KeypointSpec:
    """Keypoint definitions, body parts, flip permutations and the channel layout.

    The defaults are COCO person keypoints with the Simple Pose body parts. All
    other modules (codecs, heads, losses, augmentation, evaluation, drawing,
    exported metadata) read their counts and permutations from here.
    """

    names: Sequence[str] = COCO_KEYPOINT_NAMES
    sigmas: Sequence[float] = COCO_SIGMAS
    flip_pairs: Sequence[Sequence[int]] = COCO_FLIP_PAIRS
    skeleton: Sequence[Sequence[int]] = COCO_SKELETON
    internal_names: Sequence[str] = INTERNAL_NAMES
    internal_to_coco: Sequence[int] = INTERNAL_TO_COCO
    limb_from: Sequence[int] = LIMB_FROM
    limb_to: Sequence[int] = LIMB_TO
    redundant_limbs: Sequence[int] = REDUNDANT_LIMBS
    draw_limbs: Sequence[int] = DRAW_LIMBS
    limb_flip_perm: Sequence[int] = LIMB_FLIP_PERM
    keypoint_flip_perm: Sequence[int] = KEYPOINT_FLIP_PERM
    keypoint_weight: float = 3.0     # loss weight of the keypoint channels (§4)
    person_mask_weight: float = 0.1  # loss weight of the person-mask channel (§4)

    def __post_init__(self):
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if isinstance(v, (list, tuple)):
                object.__setattr__(self, f.name, _as_tuple(v))
        self.validate()

    # ----------------------------------------------------------------- sizes
    @property
    def num_keypoints(self) -> int:
        """K: keypoints in the dataset order (17 for COCO)."""
        return len(self.names)

    @property
    def num_internal(self) -> int:
        """Points in the bottom-up internal order (18: COCO + neck)."""
        return len(self.internal_names)

    @property
    def num_limbs(self) -> int:
        """L: body parts (30)."""
        return len(self.limb_from)

    @property
    def limb_start(self) -> int:
        return 0

    @property
    def keypoint_start(self) -> int:
        return self.num_limbs

    @property
    def person_mask_channel(self) -> int:
        return self.num_limbs + self.num_internal

    @property
    def keypoint_max_channel(self) -> int:
        return self.person_mask_channel + 1

    @property
    def num_channels(self) -> int:
        """Channels of a bottom-up map: limbs + internal keypoints + 2 (50)."""
        return self.num_limbs + self.num_internal + 2

    @property
    def tree_limbs(self) -> tuple:
        return tuple(k for k in range(self.num_limbs) if k not in self.redundant_limbs)

    # ---------------------------------------------------------- permutations
    @property
    def flip_perm(self) -> np.ndarray:
        """(K,) COCO-order permutation: index k of a mirrored pose is flip_perm[k]."""
        perm = np.arange(self.num_keypoints)
        for a, b in self.flip_pairs:
            perm[a], perm[b] = b, a
        return perm

    @property
    def internal_flip_perm(self) -> np.ndarray:
        """(18,) permutation of the internal points (left/right swap)."""
        return np.asarray(self.keypoint_flip_perm[: self.num_internal])

    @property
    def channel_flip_perm(self) -> np.ndarray:
        """(C,) permutation of all bottom-up channels for a mirrored image (§1.4)."""
        extra = [self.keypoint_start + p for p in self.keypoint_flip_perm]
        return np.asarray(list(self.limb_flip_perm) + extra)

    def channel_weights(self) -> np.ndarray:
        """(C,) float32 loss weights per channel: limbs 1, keypoints 3, mask 0.1, max 1."""
        w = np.ones(self.num_channels, np.float32)
        w[self.keypoint_start:self.person_mask_channel] = self.keypoint_weight
        w[self.person_mask_channel] = self.person_mask_weight
        return w

    # ------------------------------------------------------------ conversion
    def to_internal(self, keypoints) -> np.ndarray:
        """COCO-order (N, K, 3) [x, y, v] -> internal (N, 18, 3) with the neck.

        The neck (§1.1) exists only when both shoulders are labelled (v > 0); it
        sits at their midpoint and takes the smaller of the two visibilities, so
        it counts as occluded when either shoulder is. Otherwise its v is 0.
        """
        kp = np.asarray(keypoints, np.float32).reshape(-1, self.num_keypoints, 3)
        out = np.zeros((kp.shape[0], self.num_internal, 3), np.float32)
        idx = np.asarray(self.internal_to_coco)
        has = idx >= 0
        out[:, has] = kp[:, idx[has]]
        neck = np.flatnonzero(~has)
        if neck.size:
            ls, rs = self.names.index("left_shoulder"), self.names.index("right_shoulder")
            l, r = kp[:, ls], kp[:, rs]
            ok = (l[:, 2] > 0) & (r[:, 2] > 0)
            n = out[:, neck[0]]
            n[:, :2] = np.where(ok[:, None], (l[:, :2] + r[:, :2]) / 2, 0)
            n[:, 2] = np.where(ok, np.minimum(l[:, 2], r[:, 2]), 0)
        return out

    def to_coco(self, internal) -> np.ndarray:
        """Internal (N, 18, 3) -> COCO-order (N, K, 3); the neck is dropped."""
        internal = np.asarray(internal, np.float32).reshape(-1, self.num_internal, 3)
        out = np.zeros((internal.shape[0], self.num_keypoints, 3), np.float32)
        for i, c in enumerate(self.internal_to_coco):
            if c >= 0:
                out[:, c] = internal[:, i]
        return out

    # ------------------------------------------------------------ validation
    def validate(self) -> None:
        k, n, lim = len(self.names), len(self.internal_names), len(self.limb_from)
        problems = []
        if len(self.sigmas) != k:
            problems.append(f"{len(self.sigmas)} sigmas for {k} keypoints")
        if len(self.internal_to_coco) != n:
            problems.append("internal_to_coco must have one entry per internal point")
        if len(self.limb_to) != lim:
            problems.append("limb_from and limb_to differ in length")
        if sorted(self.limb_flip_perm) != list(range(lim)):
            problems.append("limb_flip_perm is not a permutation of the limbs")
        if sorted(self.keypoint_flip_perm) != list(range(n + 2)):
            problems.append("keypoint_flip_perm must permute internal points + 2 extra channels")
        if any(not 0 <= i < n for i in tuple(self.limb_from) + tuple(self.limb_to)):
            problems.append("a limb endpoint is outside the internal order")
        if any(not 0 <= i < k for p in self.flip_pairs for i in p):
            problems.append("a flip pair index is outside the keypoints")
        if problems:
            raise ValueError("invalid KeypointSpec: " + "; ".join(problems))

    # ---------------------------------------------------------- serialisation
    def to_dict(self) -> dict:
        return {f.name: (list(v) if isinstance(v := getattr(self, f.name), tuple) else v)
                for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, d: dict) -> "KeypointSpec":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown KeypointSpec fields: {sorted(unknown)}")
        return cls(**d)


COCO = KeypointSpec()
