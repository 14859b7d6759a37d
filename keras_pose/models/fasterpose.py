"""FasterPose: a top-down network on low-resolution features.

Dai et al., "FasterPose", ACM TOMM 2022 (arXiv 2107.03215); spec
``docs/method_top_down.md`` §2.3 (the head is inferred there, option (a)). Input
(B, H, W, 3) float32 RGB 0..255 (H, W multiples of 32); output ``heatmaps``
(B, H/32*r, W/32*r, K) float32 *logits*: train them with a with-logits loss
(RCE, §3.2); :func:`fasterpose_inference_model` appends the sigmoid.

Head: stride-32 backbone features -> Conv(K*r^2, head_kernel, bias) ->
DepthToSpace(r) (sub-pixel, Shi et al. 2016). The bias starts at
-log((1-pi)/pi), pi = prior_prob, so every pixel initially predicts ~pi: almost
all target pixels are background, and a zero bias (sigmoid 0.5) would start
with a large, noisy background loss (§3.3, as in focal loss / CenterNet).
"""
from __future__ import annotations

import keras

from keras_pose.models import blocks
from keras_pose.models.backbones import backbone_features
from keras_pose.models.configs import FasterPoseConfig
from keras_pose.models.heads import inference_model


def build_fasterpose(config: FasterPoseConfig | None = None, K=keras, name: str = "fasterpose"):
    """Build FasterPose with Keras module ``K`` (keras or tf_keras): one flat
    functional model (B, H, W, 3) -> logits (B, H/32*r, W/32*r, K) named ``heatmaps``."""
    cfg = config or FasterPoseConfig()
    cfg.validate()
    h, w = cfg.input_size
    image = K.Input(shape=(h, w, 3), name="image")
    feats = backbone_features(K, image, cfg.backbone, cfg.alpha, cfg.weights)
    r = cfg.upscale
    head = K.layers.Conv2D(
        cfg.num_keypoints * r * r, cfg.head_kernel, padding="same", use_bias=True,
        kernel_initializer=blocks.conv_init(K),
        bias_initializer=K.initializers.Constant(cfg.prior_bias),
        name="heatmaps" if r == 1 else "head_conv",
        **({"dtype": "float32"} if r == 1 else {}))
    x = head(feats)
    if r > 1:
        x = blocks.depth_to_space_class(K)(r, name="heatmaps", dtype="float32")(x)
    return K.Model(image, x, name=name)


def fasterpose_inference_model(model, batch_size: int | None = None):
    """(B, H, W, 3) -> (B, h, w, K) probabilities: the sigmoid of ``heatmaps``,
    output layer ``heatmaps_prob`` (float32). ``batch_size`` fixes the batch
    dimension (e.g. 1 for TFLite export)."""
    return inference_model(model, FasterPoseConfig().inference_output, batch_size)
