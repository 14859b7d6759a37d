"""Heatmap losses for the bottom-up (Simple Pose) and top-down (FasterPose) models.

Every loss returns one value per sample, shape (B,), and leaves the batch
reduction to Keras (``reduction="sum_over_batch_size"``). Under
``tf.distribute`` Keras' ``fit`` divides by the *global* batch, so the
per-replica sums add up to the batch mean of the papers' losses (``docs/tf_stack_notes.md`` §5).

All maths runs in float32: with a mixed-precision policy the model's heads may
emit float16, and squaring small heatmap errors in float16 underflows.

Packing (one ``y_true`` tensor per output, so tf.data yields plain tensors):

* bottom-up, (B, h, w, C + 1) = concat(heatmaps (C = spec.num_channels, COCO 50), mask (1));
* top-down, (B, h, w, 2K) = concat(heatmaps (K), per-joint weights (K)).
"""
from __future__ import annotations

import keras
import numpy as np
from keras import ops

from keras_pose.skeleton import COCO

__all__ = [
    "FocalL2Loss", "MaskedL2Loss", "RCELoss", "HeatmapMSELoss",
    "bottom_up_loss_weights", "get_loss", "DEFAULT_SCALE_WEIGHTS",
]

# lambda_j for the scales 1/4 ... 1/64 (docs/method_bottom_up.md §4).
DEFAULT_SCALE_WEIGHTS = (0.1, 0.2, 0.4, 1.6, 6.4)


def _f32(x):
    return ops.cast(x, "float32")


class _BottomUpLoss(keras.losses.Loss):
    """Shared unpacking of (B, h, w, C + 1) targets and the channel weights."""

    def __init__(self, channel_weights=None, name=None,
                 reduction="sum_over_batch_size", dtype=None):
        # dtype is ignored on purpose: the loss always computes in float32.
        super().__init__(name=name, reduction=reduction, dtype="float32")
        if channel_weights is None:
            channel_weights = COCO.channel_weights()
        w = np.asarray(channel_weights, np.float32).reshape(-1)
        if w.size == 0:
            raise ValueError("channel_weights must not be empty")
        self.channel_weights = w

    def _split(self, y_true, y_pred):
        """-> (P, G, mask * w_c), all float32 (B, h, w, C)."""
        y_true, y_pred = _f32(y_true), _f32(y_pred)
        c = self.channel_weights.shape[0]
        if y_true.shape[-1] is not None and y_true.shape[-1] != c + 1:
            raise ValueError(
                f"{self.name}: y_true must have C + 1 = {c + 1} channels "
                f"(heatmaps + mask), got {y_true.shape[-1]}")
        if y_pred.shape[-1] is not None and y_pred.shape[-1] != c:
            raise ValueError(f"{self.name}: y_pred must have C = {c} channels, got {y_pred.shape[-1]}")
        target, mask = y_true[..., :c], y_true[..., c:]
        weight = mask * ops.convert_to_tensor(self.channel_weights, "float32")
        return y_pred, target, weight

    def get_config(self):
        return {**super().get_config(),
                "channel_weights": [float(v) for v in self.channel_weights]}


@keras.saving.register_keras_serializable(package="keras_pose")
class FocalL2Loss(_BottomUpLoss):
    """Focal L2 of Simple Pose (Li et al., AAAI 2020; ``docs/method_bottom_up.md`` §4).

    Shapes: y_pred (B, h, w, C) maps, y_true (B, h, w, C + 1) = concat(G, M)
    with the loss mask M in the last channel; returns (B,).

    Per pixel and channel: foreground iff G >= ``threshold`` (inclusive);
    s_t = P - alpha on foreground and 1 - P - beta on background;
    f = |1 - s_t| ** gamma; the value is (P - G)^2 * f * M * w_c summed over
    (h, w, C). The focal factor is *not* detached (as in the authors' code):
    its gradient flows, and d|u|/du = 0 at u = 0.

    Args:
        gamma, alpha, beta: focal parameters; the defaults (1, 0, 0) are the
            authors' code at HEAD; ``FocalL2Loss.paper()`` gives the paper's
            (2, 0.1, 0.02).
        threshold: foreground threshold on G (0.01; the AP-0.68 model used 0.008).
        channel_weights: (C,) per-channel weights w_c; default
            ``COCO.channel_weights()`` (limbs 1, keypoints 3, mask 0.1, max 1).
    """

    def __init__(self, gamma=1.0, alpha=0.0, beta=0.0, threshold=0.01,
                 channel_weights=None, name="focal_l2",
                 reduction="sum_over_batch_size", dtype=None):
        super().__init__(channel_weights, name=name, reduction=reduction, dtype=dtype)
        if gamma < 0:
            raise ValueError(f"gamma must be >= 0, got {gamma}")
        self.gamma, self.alpha, self.beta = float(gamma), float(alpha), float(beta)
        self.threshold = float(threshold)

    @classmethod
    def paper(cls, **kwargs) -> "FocalL2Loss":
        """The paper's form: gamma=2, alpha=0.1, beta=0.02 (issue #16, §4)."""
        kwargs.setdefault("name", "focal_l2_paper")
        return cls(gamma=2.0, alpha=0.1, beta=0.02, **kwargs)

    def focal_factor(self, pred, target):
        """f = |1 - s_t| ** gamma, float32 of the same shape as ``pred``."""
        fg = ops.greater_equal(target, ops.cast(self.threshold, "float32"))
        # 1 - s_t: 1 - P + alpha on foreground, P + beta on background.
        u = ops.where(fg, 1.0 - pred + self.alpha, pred + self.beta)
        if self.gamma == 0:
            return ops.ones_like(u)
        if self.gamma == 1:
            return ops.abs(u)
        # pow(|u|, g) keeps the gradient finite at u = 0 for g >= 1.
        return ops.power(ops.abs(u), self.gamma)

    def call(self, y_true, y_pred):
        pred, target, weight = self._split(y_true, y_pred)
        err = ops.square(pred - target) * self.focal_factor(pred, target) * weight
        return ops.sum(err, axis=(1, 2, 3))

    def get_config(self):
        return {**super().get_config(), "gamma": self.gamma, "alpha": self.alpha,
                "beta": self.beta, "threshold": self.threshold}


@keras.saving.register_keras_serializable(package="keras_pose")
class MaskedL2Loss(_BottomUpLoss):
    """Plain L2 stage of the recipe (``docs/method_bottom_up.md`` §4, "Plain L2").

    Shapes as ``FocalL2Loss``; value = sum over (h, w, C) of (P - G)^2 * M * w_c.

    The authors' L2 trainer has no channel weights. We keep them by default so
    that switching from the L2 stage to the focal stage changes only the focal
    factor, not the balance between limbs, keypoints and the person mask; pass
    ``channel_weights=[1] * C`` for the authors' unweighted form.
    """

    def __init__(self, channel_weights=None, name="masked_l2",
                 reduction="sum_over_batch_size", dtype=None):
        super().__init__(channel_weights, name=name, reduction=reduction, dtype=dtype)

    def call(self, y_true, y_pred):
        pred, target, weight = self._split(y_true, y_pred)
        return ops.sum(ops.square(pred - target) * weight, axis=(1, 2, 3))


def bottom_up_loss_weights(stacks: int, scale_weights=DEFAULT_SCALE_WEIGHTS) -> list:
    """Per-output ``loss_weights`` for a stacks x scales bottom-up model.

    Outputs are stack-major, finest first ([s0_x0..s0_x4, s1_x0, ...]). Weight
    of output (t, j) = lambda_j / sum(lambda) / stacks, so that with each
    output's loss averaged over the batch the compiled total equals
    L = (sum_j lambda_j * mean_t L_tj) / sum(lambda) / B (``docs/method_bottom_up.md`` §4).
    Use as ``compile(loss=[loss] * n, loss_weights=bottom_up_loss_weights(...))``
    (a single loss with a list of weights is rejected by Keras).
    """
    if int(stacks) < 1:
        raise ValueError(f"stacks must be >= 1, got {stacks}")
    lam = np.asarray(scale_weights, np.float64).reshape(-1)
    if lam.size == 0 or np.any(lam < 0) or lam.sum() <= 0:
        raise ValueError(f"scale_weights must be non-negative with a positive sum, got {scale_weights}")
    per_scale = lam / lam.sum() / int(stacks)
    return [float(v) for v in np.tile(per_scale, int(stacks))]


class _TopDownLoss(keras.losses.Loss):
    """Shared unpacking of (B, h, w, 2K) = concat(heatmaps, joint weights)."""

    def __init__(self, name=None, reduction="sum_over_batch_size", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype="float32")

    def _split(self, y_true, y_pred):
        y_true, y_pred = _f32(y_true), _f32(y_pred)
        k = y_pred.shape[-1]
        if k is None or (y_true.shape[-1] is not None and y_true.shape[-1] != 2 * k):
            raise ValueError(
                f"{self.name}: y_true must have 2K channels (heatmaps + joint weights) "
                f"for K = {k} predicted maps, got {y_true.shape[-1]}")
        return y_pred, y_true[..., :k], y_true[..., k:]


@keras.saving.register_keras_serializable(package="keras_pose")
class RCELoss(_TopDownLoss):
    """Regressive cross-entropy of FasterPose (``docs/method_top_down.md`` §3).

    Shapes: y_pred (B, h, w, K) *logits*; y_true (B, h, w, 2K) = concat(Gaussian
    targets y in [0, 1], per-joint weights broadcast over (h, w)); returns (B,).

    Per pixel: max(z, 0) - z*y + log(1 + exp(-|z|)), the stable form of the
    sigmoid cross-entropy with soft labels (equal to
    ``tf.nn.sigmoid_cross_entropy_with_logits``); times the joint weight; mean
    over (h, w, K) per sample (§3.3, like SimpleBaseline's JointsMSELoss).
    Weight-0 joints (unlabelled, or outside the map) contribute nothing (§3.4).
    """

    def __init__(self, name="rce", reduction="sum_over_batch_size", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)

    def call(self, y_true, y_pred):
        z, y, w = self._split(y_true, y_pred)
        ce = ops.maximum(z, 0.0) - z * y + ops.log1p(ops.exp(-ops.abs(z)))
        return ops.mean(ce * w, axis=(1, 2, 3))


@keras.saving.register_keras_serializable(package="keras_pose")
class HeatmapMSELoss(_TopDownLoss):
    """SimpleBaseline's JointsMSELoss (Xiao et al., ECCV 2018), the FasterPose control.

    Shapes as ``RCELoss`` but y_pred are linear heatmaps; per pixel
    0.5 * (w * (P - G))^2, averaged over (h, w, K) per sample -> (B,). As in
    SimpleBaseline the weight multiplies both maps before squaring (same as a
    linear weight for the usual 0/1 joint weights).
    """

    def __init__(self, name="heatmap_mse", reduction="sum_over_batch_size", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)

    def call(self, y_true, y_pred):
        p, g, w = self._split(y_true, y_pred)
        return ops.mean(0.5 * ops.square(w * (p - g)), axis=(1, 2, 3))


_LOSSES = {
    "l2": MaskedL2Loss,
    "focal_l2": FocalL2Loss,
    "focal_l2_paper": FocalL2Loss.paper,
    "rce": RCELoss,
    "mse": HeatmapMSELoss,
}


def get_loss(identifier: str, **kwargs) -> keras.losses.Loss:
    """A loss by the training flag's id: l2, focal_l2, focal_l2_paper, rce or mse."""
    key = str(identifier).lower()
    if key not in _LOSSES:
        raise ValueError(f"unknown loss {identifier!r}; expected one of {sorted(_LOSSES)}")
    return _LOSSES[key](**kwargs)
