"""KeypointSpec: the single source of truth for keypoints, body parts and channels.

Shapes: K keypoints in the dataset order (what annotations, results files and
``Poses`` use: 17 for COCO), J points in the bottom-up map order (the K
keypoints plus synthesised points such as COCO's neck: 18 for COCO), L body
parts ("limbs": 30 for COCO), C = L + J + 2 bottom-up channels per scale.

The bottom-up output (Li et al., "Simple Pose", AAAI 2020; docs/method_bottom_up.md §1) holds, per
scale: channels 0..L-1 the body parts in their processing order, L..L+J-1 the
keypoints in the map order, L+J the person mask, L+J+1 the max over the
keypoint channels. COCO keeps the paper's layout (CMU/OpenPose point order with
a neck at the midpoint of the shoulders, 17 tree limbs + 13 redundant ones), so
its maps are those of the authors' released model.

A spec is written and read as a JSON "keypoint spec file" (``to_dict`` /
``from_dict``, ``save`` / ``load_spec``; format in ``docs/keypoints.md`` and
``keras_pose.keypoint_file``). Built-in specs: ``coco``, ``crowdpose``,
``mpii``, ``ap10k`` (``keras_pose.keypoint_specs``).

Nothing here imports TensorFlow.
"""
from __future__ import annotations

import dataclasses
import functools
import os
from typing import Optional, Sequence

import numpy as np

from keras_pose import keypoint_specs
from keras_pose.keypoint_specs import COCO_KEYPOINT_NAMES  # noqa: F401 (re-exported)


def _tuplify(x):
    if isinstance(x, (list, tuple)):
        return tuple(_tuplify(v) for v in x)
    if isinstance(x, np.generic):
        return x.item()
    return x


@dataclasses.dataclass(frozen=True)
class KeypointSpec:
    """Keypoint definitions, the bottom-up body-part graph and the channel layout.

    Every module (codecs, heads, losses, augmentation, evaluation, drawing,
    exported metadata) reads its counts and permutations from here.

    Args:
        names: (K,) keypoint names, dataset order.
        sigmas: (K,) OKS sigmas (pycocotools' ``kpt_oks_sigmas``).
        flip_pairs: (left, right) keypoint index pairs swapped by a mirror.
        skeleton: keypoint index pairs drawn as lines.
        synthesized: (name, a, b) points made at the midpoint of keypoints a and b
            when both are labelled (COCO's neck from the shoulders, Simple Pose
            docs/method_bottom_up.md §1.1); they exist only in the bottom-up maps.
        internal_names: (J,) the map order of the K keypoints and the synthesised
            points; default: keypoints, then synthesised points.
        limbs: (L,) (from, to) indices into the map order, in grouping order;
            default: derived from ``skeleton`` (``keypoint_file.derive_body_parts``).
        redundant_limbs: indices into ``limbs`` of the redundant ones (the rest
            form the tree); default: () with given limbs, derived otherwise.
        keypoint_weight, person_mask_weight: loss weights of those channels.
        name: a short name ("coco", "crowdpose", ...), informational.
    """

    names: Sequence[str]
    sigmas: Sequence[float]
    flip_pairs: Sequence[Sequence[int]] = ()
    skeleton: Sequence[Sequence[int]] = ()
    synthesized: Sequence[Sequence] = ()
    internal_names: Optional[Sequence[str]] = None
    limbs: Optional[Sequence[Sequence[int]]] = None
    redundant_limbs: Optional[Sequence[int]] = None
    keypoint_weight: float = 3.0     # loss weight of the keypoint channels (docs/method_bottom_up.md §4)
    person_mask_weight: float = 0.1  # loss weight of the person-mask channel
    name: str = "custom"

    def __post_init__(self):
        for f in dataclasses.fields(self):
            object.__setattr__(self, f.name, _tuplify(getattr(self, f.name)))
        from keras_pose import keypoint_file
        keypoint_file.complete(self)   # fills the defaults, validates, derives flip maps

    # ----------------------------------------------------------------- sizes
    @property
    def num_keypoints(self) -> int:
        """K: keypoints in the dataset order (17 for COCO)."""
        return len(self.names)

    @property
    def num_internal(self) -> int:
        """J: points in the bottom-up map order (COCO: 17 + the neck)."""
        return len(self.internal_names)

    @property
    def num_limbs(self) -> int:
        """L: body parts (COCO: 30)."""
        return len(self.limbs)

    @functools.cached_property
    def limb_from(self) -> tuple:
        return tuple(a for a, _ in self.limbs)

    @functools.cached_property
    def limb_to(self) -> tuple:
        return tuple(b for _, b in self.limbs)

    @functools.cached_property
    def internal_to_coco(self) -> tuple:
        """(J,) dataset index of each map point; -1 for a synthesised point."""
        return tuple(self.names.index(n) if n in self.names else -1 for n in self.internal_names)

    @functools.cached_property
    def tree_limbs(self) -> tuple:
        return tuple(k for k in range(self.num_limbs) if k not in self.redundant_limbs)

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
        """C: channels of a bottom-up map: limbs + map points + 2 (COCO: 50)."""
        return self.num_limbs + self.num_internal + 2

    # ---------------------------------------------------------- permutations
    @property
    def flip_perm(self) -> np.ndarray:
        """(K,) dataset-order permutation: index k of a mirrored pose is flip_perm[k]."""
        perm = np.arange(self.num_keypoints)
        for a, b in self.flip_pairs:
            perm[a], perm[b] = b, a
        return perm

    @property
    def limb_flip_perm(self) -> tuple:
        """(L,) the limb each limb becomes in a mirrored image."""
        return self._limb_flip

    @property
    def keypoint_flip_perm(self) -> tuple:
        """(J + 2,) map-point permutation for a mirror; the mask and max channels stay."""
        return self._point_flip + (self.num_internal, self.num_internal + 1)

    @property
    def internal_flip_perm(self) -> np.ndarray:
        """(J,) permutation of the map points (left/right swap)."""
        return np.asarray(self._point_flip)

    @property
    def channel_flip_perm(self) -> np.ndarray:
        """(C,) permutation of all bottom-up channels for a mirrored image."""
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
        """Dataset-order (N, K, 3) [x, y, v] -> map order (N, J, 3) with synthesised points.

        A synthesised point (COCO's neck, docs/method_bottom_up.md §1.1) exists only when both
        of its keypoints are labelled (v > 0); it sits at their midpoint and takes
        the smaller of the two visibilities, so it counts as occluded when either
        is. Otherwise it is (0, 0, 0).
        """
        kp = np.asarray(keypoints, np.float32).reshape(-1, self.num_keypoints, 3)
        out = np.zeros((kp.shape[0], self.num_internal, 3), np.float32)
        idx = np.asarray(self.internal_to_coco)
        has = idx >= 0
        out[:, has] = kp[:, idx[has]]
        for name, a, b in self.synthesized:
            pa, pb = kp[:, a], kp[:, b]
            ok = (pa[:, 2] > 0) & (pb[:, 2] > 0)
            n = out[:, self.internal_names.index(name)]
            n[:, :2] = np.where(ok[:, None], (pa[:, :2] + pb[:, :2]) / 2, 0)
            n[:, 2] = np.where(ok, np.minimum(pa[:, 2], pb[:, 2]), 0)
        return out

    def to_coco(self, internal) -> np.ndarray:
        """Map order (N, J, 3) -> dataset order (N, K, 3); synthesised points are dropped."""
        internal = np.asarray(internal, np.float32).reshape(-1, self.num_internal, 3)
        out = np.zeros((internal.shape[0], self.num_keypoints, 3), np.float32)
        for i, c in enumerate(self.internal_to_coco):
            if c >= 0:
                out[:, c] = internal[:, i]
        return out

    # ---------------------------------------------------------- serialisation
    def to_dict(self) -> dict:
        """The keypoint spec file content (JSON-ready; ``docs/keypoints.md``)."""
        from keras_pose import keypoint_file
        return keypoint_file.to_file_dict(self)

    @classmethod
    def from_dict(cls, d: dict, source: str = "keypoint spec") -> "KeypointSpec":
        """Read a spec file's content (also the field dicts older runs saved)."""
        from keras_pose import keypoint_file
        return keypoint_file.from_file_dict(d, source)

    def save(self, path) -> str:
        """Write the spec file (JSON) to ``path``; returns the path."""
        from keras_pose import keypoint_file
        return keypoint_file.save(self, path)


def load_spec(spec=None) -> KeypointSpec:
    """A KeypointSpec from a built-in name, a spec file path, a dict, a spec or None (COCO).

    Built-in names: ``keras_pose.keypoint_specs.BUILTIN`` (coco, crowdpose, mpii,
    ap10k). Errors are one line naming the file or the name.
    """
    from keras_pose import keypoint_file
    if spec is None:
        return COCO
    if isinstance(spec, KeypointSpec):
        return spec
    if isinstance(spec, dict):
        return KeypointSpec.from_dict(spec)
    if isinstance(spec, (str, os.PathLike)):
        key = str(spec).strip().lower().replace("-", "").replace("_", "")
        if key in keypoint_specs.BUILTIN:
            return keypoint_specs.get(key)
        if os.path.isfile(spec):
            return keypoint_file.load(spec)
        raise ValueError(f"keypoints {str(spec)!r}: neither a built-in spec "
                         f"({', '.join(keypoint_specs.BUILTIN)}) nor an existing spec file")
    raise TypeError(f"keypoints must be a name, a path, a dict or a KeypointSpec, "
                    f"got {type(spec).__name__}")


COCO = keypoint_specs.get("coco")
