"""BodyPartsCodec: the bottom-up (Simple Pose) representation, both directions.

Encode: keypoints -> the spec's C-channel targets (COCO: 50) at stride 4 plus the loss mask,
and the 5-scale supervision pyramid (Li et al., AAAI 2020; ``docs/method_bottom_up.md``
§2.3-2.6). Decode: predicted maps -> peaks -> limb scores -> greedy assembly
with redundant limbs -> ``Poses`` (§5.2-5.6); the person assembly is
the authors' (``grouping="paper"``) or keras_pose's (``"matched"``, the default,
``docs/grouping.md``).

The same configured object is used by the tf.data pipeline, the Keras
predictor, the evaluator and the TFLite runner. NumPy and OpenCV, with the
decoder's hot loops compiled by numba where it is installed (``_kernels``):
imports without TensorFlow.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from keras_pose.config import Config
from keras_pose.skeleton import COCO, KeypointSpec
from keras_pose.structures import Poses


GROUPINGS = ("matched", "paper")


@dataclasses.dataclass
class BodyPartsCodecConfig(Config):
    """Codec numbers; defaults are the authors' (``docs/method_bottom_up.md``)."""

    # --- targets (§2.3-2.6)
    stride: int = 4
    sigma: float = 9.0                 # keypoint Gaussian sigma, input pixels
    limb_sigma: float = 7.0            # body-part band sigma, input pixels
    keypoint_threshold: float = 0.015  # sets the keypoint window half-size
    limb_threshold: float = 0.015      # band values <= this are floored
    limb_floor: float = 0.01           # value inside the limb box below the threshold
    limb_margin: float = 4.0           # limb box extension, input pixels (1 stride)
    num_scales: int = 5                # supervision scales: /4 ... /64
    mask_cut: float = 0.5              # pyramid mask values below this become 0
    # --- decoding (§5)
    peak_threshold: float = 0.1        # thre1
    limb_sample_threshold: float = 0.1  # thre2
    connect_ratio: float = 0.8         # fraction of limb samples above thre2
    max_limb_samples: int = 20         # mid_num
    length_rate: float = 16.0          # len_rate
    connection_tolerance: float = 0.7  # connection_tole
    min_limb_length: float = 0.0       # shorter candidate pairs are not limbs (input px; 0: authors')
    refine_radius: int = 2             # offset_radius (5x5 window)
    min_parts: int = 2                 # persons with fewer parts are dropped
    min_mean_score: float = 0.45       # persons with total/parts below are dropped
    max_candidates: int = 48           # cap on peaks per keypoint type (bounds pairing)
    # Cap on candidate pairs over all limbs: where more would be scored (noise-like
    # maps; a clean crowd of 24 has ~15 000), every type keeps only its strongest
    # k candidates, k the largest that fits (docs/grouping.md). 0: no cap.
    max_limb_pairs: int = 30_000
    # Person assembly (docs/grouping.md): "matched" = keras_pose's (maximum-weight
    # limb matching where the greedy leaves joints unconnected, the tB quirk fixed,
    # split fragments merged: better in crowds, not lower on sparse sets); "paper" =
    # the authors' (§5.4-5.5, quirks kept).
    grouping: str = "matched"

    def validate(self) -> None:
        if self.stride < 1:
            raise ValueError(f"stride must be >= 1, got {self.stride}")
        for name in ("sigma", "limb_sigma"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        for name in ("keypoint_threshold", "limb_threshold"):
            if not 0 < getattr(self, name) < 1:
                raise ValueError(f"{name} must be in (0, 1), got {getattr(self, name)}")
        if self.num_scales < 1:
            raise ValueError(f"num_scales must be >= 1, got {self.num_scales}")
        if self.min_limb_length < 0:
            raise ValueError(f"min_limb_length must be >= 0, got {self.min_limb_length}")
        if self.grouping not in GROUPINGS:
            raise ValueError(f"grouping must be one of {GROUPINGS}, got {self.grouping!r}")
        if self.max_candidates < 1:
            raise ValueError(f"max_candidates must be >= 1, got {self.max_candidates}")
        if self.max_limb_pairs < 0:
            raise ValueError(f"max_limb_pairs must be >= 0 (0: no cap), got {self.max_limb_pairs}")


class BodyPartsCodec:
    """Encode annotations to Simple Pose targets and decode maps to persons.

    Args:
        config: a BodyPartsCodecConfig (defaults: the paper's).
        spec: the KeypointSpec (COCO with the Simple Pose body parts).
        **overrides: fields of the config to change, e.g. ``sigma=7``.
    """

    def __init__(self, config: BodyPartsCodecConfig | None = None,
                 spec: KeypointSpec | None = None, **overrides):
        config = config or BodyPartsCodecConfig()
        self.config = config.replace(**overrides) if overrides else config
        self.config.validate()
        self.spec = spec or COCO

    # ------------------------------------------------------------ encoding
    def encode(self, keypoints, image_size, person_mask=None, ignore_mask=None) -> dict:
        """Training targets for one image.

        Args:
            keypoints: (N, K, 3) COCO order, [x, y, v] in input pixels, v in {0,1,2}.
            image_size: (H, W) of the input; both multiples of the stride.
            person_mask: optional (H, W) array, 1 on persons (channel 48).
            ignore_mask: optional (H, W) array, 1 where the loss must ignore.

        Returns:
            {"heatmaps": (H/s, W/s, C) float32, "mask": (H/s, W/s, 1) float32}.
        """
        from keras_pose.codecs import _bp_encode
        return _bp_encode.encode_targets(self, keypoints, image_size, person_mask, ignore_mask)

    def pyramid(self, targets: dict) -> list:
        """The ``num_scales`` supervision scales (§2.6), finest first.

        Returns a list of {"heatmaps": (h_j, w_j, C), "mask": (h_j, w_j, 1)}:
        targets average-pooled by 2**j, masks resized bilinearly at half-pixel
        centres with values below ``mask_cut`` set to 0.
        """
        from keras_pose.codecs import _bp_encode
        return _bp_encode.build_pyramid(self, targets)

    # ------------------------------------------------------------ decoding
    def fuse_flip(self, maps, mirrored_maps) -> np.ndarray:
        """Average maps with those of the mirrored image (§5.2 step 6).

        Both (h, w, C); the mirrored maps are flipped back horizontally and their
        channels permuted with ``spec.channel_flip_perm`` before averaging.
        """
        from keras_pose.codecs import _bp_decode
        return _bp_decode.fuse_flip(self, maps, mirrored_maps)

    def decode(self, heatmaps, image_height: float | None = None) -> Poses:
        """Predicted maps -> persons in input pixels.

        Args:
            heatmaps: (H/s, W/s, >= num_limbs + num_internal) float maps at stride s.
            image_height: height used by the limb length prior (§5.4); defaults
                to the input height s * h.
        """
        from keras_pose.codecs import _bp_decode
        return _bp_decode.decode_maps(self, heatmaps, image_height)

    # ------------------------------------------------------- serialisation
    def get_config(self) -> dict:
        return {"config": self.config.to_dict(), "spec": self.spec.to_dict()}

    @classmethod
    def from_config(cls, d: dict) -> "BodyPartsCodec":
        return cls(BodyPartsCodecConfig.from_dict(d["config"]), KeypointSpec.from_dict(d["spec"]))

    def __repr__(self) -> str:
        return f"BodyPartsCodec({self.config})"
