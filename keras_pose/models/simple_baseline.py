"""SimpleBaseline: the deconvolution-head control for FasterPose.

Xiao, Wu, Wei, "Simple Baselines for Human Pose Estimation and Tracking",
ECCV 2018; ``docs/method_top_down.md`` §2.1. Input (B, H, W, 3) float32 RGB 0..255;
output ``heatmaps`` (B, H/32*2^n, W/32*2^n, K) float32, linear (MSE-trained):
64x48 for a 256x192 input with the default n = 3 deconvolutions.
"""
from __future__ import annotations

import keras

from keras_pose.models import blocks
from keras_pose.models.backbones import backbone_features
from keras_pose.models.configs import SimpleBaselineConfig


def build_simple_baseline(config: SimpleBaselineConfig | None = None, K=keras,
                          name: str = "simple_baseline"):
    """Backbone -> n x [Conv2DTranspose(4x4, stride 2, no bias), BN, ReLU] -> 1x1 conv to K.

    Keras' 'same' transposed conv with k=4, s=2 pads 1 before, exactly PyTorch's
    ConvTranspose2d(padding=1, output_padding=0) of the reference, so the maps align.
    Init as in the reference: deconv and final conv weights N(0, 0.001^2), bias 0.
    """
    cfg = config or SimpleBaselineConfig()
    cfg.validate()
    h, w = cfg.input_size
    image = K.Input(shape=(h, w, 3), name="image")
    x = backbone_features(K, image, cfg.backbone, cfg.alpha, cfg.weights)
    for i in range(cfg.num_deconv):
        x = K.layers.Conv2DTranspose(
            cfg.deconv_filters, 4, strides=2, padding="same", use_bias=False,
            kernel_initializer=blocks.conv_init(K), name=f"deconv{i}")(x)
        x = blocks.batch_norm(K, f"deconv{i}_bn")(x)
        x = K.layers.ReLU(name=f"deconv{i}_relu")(x)
    x = K.layers.Conv2D(cfg.num_keypoints, 1, use_bias=True, kernel_initializer=blocks.conv_init(K),
                        bias_initializer="zeros", name="heatmaps", dtype="float32")(x)
    return K.Model(image, x, name=name)
