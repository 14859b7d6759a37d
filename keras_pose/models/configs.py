"""Typed model configs (dataclasses); no TensorFlow import, so presets can be
listed and saved beside checkpoints without building anything.

* :class:`IMHNConfig` - bottom-up Identity Mapping Hourglass Network (see
  ``docs/method_bottom_up.md`` §3).
* :class:`FasterPoseConfig` - top-down backbone + 1x1 conv + depth_to_space
  head (``docs/method_top_down.md`` §2.3).
* :class:`SimpleBaselineConfig` - top-down backbone + 3 deconvolutions (the
  FasterPose control, ``docs/method_top_down.md`` §2.1).
"""
from __future__ import annotations

import dataclasses
import math
from typing import ClassVar, Optional, Tuple

from keras_pose.config import Config
from keras_pose.skeleton import COCO

BACKBONES = ("resnet50", "resnet101", "resnet152", "mobilenetv2")
BACKBONE_STRIDE = 32


def _check_size(cls_name, size, multiple):
    if (not isinstance(size, (tuple, list)) or len(size) != 2
            or not all(isinstance(v, int) and v > 0 for v in size)):
        raise ValueError(f"{cls_name}.input_size must be a pair of positive ints (H, W), got {size!r}")
    if size[0] % multiple or size[1] % multiple:
        raise ValueError(f"{cls_name}.input_size {tuple(size)} must be multiples of {multiple}")


def _check_positive(cls_name, **values):
    for k, v in values.items():
        if not isinstance(v, int) or v < 1:
            raise ValueError(f"{cls_name}.{k} must be a positive int, got {v!r}")


@dataclasses.dataclass
class IMHNConfig(Config):
    """Stacked IMHN (docs/method_bottom_up.md §3). Input (B, H, W, 3) RGB 0..255; outputs
    stacks x (order+1) maps (B, H/4/2^j, W/4/2^j, out_channels).

    Level i of the hourglass has ``width + growth*i`` channels (256 -> 768 for
    the paper model, §3.3); each per-scale head maps them to ``feature_width``
    channels (§3.4). ``width`` must be a multiple of 4: the stem concatenates
    two width/2 halves (x_a and the dilated branch, §3.2) after a width/4 7x7 conv.
    """

    stacks: int = 4
    width: int = 256
    growth: int = 128
    order: int = 4
    out_channels: int = COCO.num_channels
    input_size: Tuple[int, int] = (512, 512)
    se_reduction: int = 16
    feature_width: int = 256
    dilated_stem: bool = True

    task: ClassVar[str] = "bottom_up"

    def __post_init__(self):
        self.input_size = tuple(self.input_size)

    @staticmethod
    def head_name(stack: int, scale: int) -> str:
        """Name of the output layer of stack ``stack`` at scale ``scale`` (0: finest)."""
        return f"s{stack}_x{scale}"

    @property
    def inference_output(self) -> dict:
        """The last stack's finest output, the one decoded (Simple Pose §5.2)."""
        return {"layer": self.head_name(self.stacks - 1, 0), "activation": None}

    @property
    def num_scales(self) -> int:
        """Outputs per stack: the hourglass taps order+1 scales (5 for order 4)."""
        return self.order + 1

    @property
    def stride(self) -> int:
        """Input pixels per output cell at the finest scale."""
        return 4

    @property
    def size_multiple(self) -> int:
        """H and W must be multiples of this: stride 4 times 2^order downsamples."""
        return 2 ** (self.order + 2)

    def output_sizes(self):
        h, w = self.input_size
        return [(h // 4 // 2 ** j, w // 4 // 2 ** j) for j in range(self.num_scales)]

    def output_names(self):
        return [self.head_name(t, j) for t in range(self.stacks) for j in range(self.num_scales)]

    def validate(self) -> None:
        n = type(self).__name__
        _check_positive(n, stacks=self.stacks, width=self.width, order=self.order,
                        out_channels=self.out_channels, se_reduction=self.se_reduction,
                        feature_width=self.feature_width)
        if not isinstance(self.growth, int) or self.growth < 0 or self.growth % 2:
            raise ValueError(f"{n}.growth must be an even int >= 0, got {self.growth!r}")
        if self.width % 4:
            raise ValueError(f"{n}.width must be a multiple of 4 (stem halves and bottlenecks), "
                             f"got {self.width}")
        if self.se_reduction > self.feature_width:
            raise ValueError(f"{n}.se_reduction {self.se_reduction} exceeds feature_width "
                             f"{self.feature_width}")
        _check_size(n, self.input_size, self.size_multiple)


@dataclasses.dataclass
class _TopDownConfig(Config):
    backbone: str = "resnet50"
    alpha: float = 1.0
    input_size: Tuple[int, int] = (256, 192)
    num_keypoints: int = COCO.num_keypoints
    weights: Optional[str] = None

    task: ClassVar[str] = "top_down"

    def __post_init__(self):
        self.input_size = tuple(self.input_size)

    @property
    def inference_output(self) -> dict:
        """The ``heatmaps`` layer; subclasses trained on logits add their activation."""
        return {"layer": "heatmaps", "activation": None}

    def validate(self) -> None:
        n = type(self).__name__
        if self.backbone not in BACKBONES:
            raise ValueError(f"{n}.backbone must be one of {BACKBONES}, got {self.backbone!r}")
        if self.backbone != "mobilenetv2" and self.alpha != 1.0:
            raise ValueError(f"{n}.alpha applies to mobilenetv2 only (got {self.alpha} "
                             f"for {self.backbone})")
        if not self.alpha > 0:
            raise ValueError(f"{n}.alpha must be > 0, got {self.alpha!r}")
        _check_positive(n, num_keypoints=self.num_keypoints)
        if self.weights not in (None, "imagenet") and not str(self.weights).endswith((".h5", ".keras")):
            raise ValueError(f"{n}.weights must be None, 'imagenet' or a .h5/.keras weights file, "
                             f"got {self.weights!r}")
        _check_size(n, self.input_size, BACKBONE_STRIDE)


@dataclasses.dataclass
class FasterPoseConfig(_TopDownConfig):
    """FasterPose (``docs/method_top_down.md`` §2.3): stride-32 backbone features ->
    Conv(head_kernel, K*r^2) -> depth_to_space(r) -> logits (B, H/32*r, W/32*r, K).

    ``prior_prob`` sets the head bias to -log((1-p)/p) so the initial sigmoid
    output is ~p everywhere (focal-loss style prior, §3.3).
    """

    upscale: int = 8
    head_kernel: int = 1
    prior_prob: float = 0.01

    @property
    def output_size(self):
        h, w = self.input_size
        return (h // BACKBONE_STRIDE * self.upscale, w // BACKBONE_STRIDE * self.upscale)

    @property
    def inference_output(self) -> dict:
        """Trained on logits (RCE, FasterPose §3.2): inference applies the sigmoid."""
        return {"layer": "heatmaps", "activation": "sigmoid"}

    @property
    def prior_bias(self) -> float:
        return -math.log((1.0 - self.prior_prob) / self.prior_prob)

    def validate(self) -> None:
        super().validate()
        n = type(self).__name__
        if self.upscale not in (1, 2, 4, 8):
            raise ValueError(f"{n}.upscale must be 1, 2, 4 or 8, got {self.upscale!r}")
        if self.head_kernel not in (1, 3):
            raise ValueError(f"{n}.head_kernel must be 1 or 3, got {self.head_kernel!r}")
        if not 0.0 < self.prior_prob < 1.0:
            raise ValueError(f"{n}.prior_prob must be in (0, 1), got {self.prior_prob!r}")


@dataclasses.dataclass
class SimpleBaselineConfig(_TopDownConfig):
    """SimpleBaseline (Xiao et al. 2018; ``docs/method_top_down.md`` §2.1): backbone ->
    num_deconv x [Conv2DTranspose(deconv_filters, 4, stride 2, no bias), BN, ReLU]
    -> 1x1 conv to K, linear: (B, H/32*2^n, W/32*2^n, K)."""

    num_deconv: int = 3
    deconv_filters: int = 256

    @property
    def output_size(self):
        h, w = self.input_size
        f = 2 ** self.num_deconv
        return (h // BACKBONE_STRIDE * f, w // BACKBONE_STRIDE * f)

    def validate(self) -> None:
        super().validate()
        _check_positive(type(self).__name__, num_deconv=self.num_deconv,
                        deconv_filters=self.deconv_filters)
