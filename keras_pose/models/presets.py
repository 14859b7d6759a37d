"""Named model presets: the paper models, mobile models and tiny test models.

``get_preset(name)`` returns a copy of the config (this module needs no TensorFlow,
but its package imports Keras: ``keras_pose.checks.PRESET_NAMES`` lists the names
without it);
``from_preset(name, **overrides)`` builds the Keras 3 model;
``build_model(config, K)`` dispatches on the config type (QAT builds the
tf_keras twin with ``K=tf_keras``).

Choices that are ours rather than the papers':

* ``imhn_mobile`` - 2 stacks, width 64, growth 16, feature width 64 at 256x256:
  2.65 M trainable params, 2.0 GMACs (true multiply-accumulates). Growth 32 would give
  3.7-4.1 M params for almost no extra compute (the deep, low-resolution
  levels hold the parameters), so growth 16 keeps the model within a phone's
  1-3 M budget. SE reduction 8 keeps 8 hidden units in the 64-channel gates.
* ``imhn_tiny`` - the CPU quickstart: 1 stack, order 4 (so the usual 5 output
  scales), width 32, growth 16, feature width 32 at 128x128,
  0.08 GMACs, 278 layers (0.52 M trainable params). Measured on the 2-core CI box (batch 8, fit with one
  MSE per output, noisy shared CPU): first step ~43 s (graph tracing),
  steady ~0.28 s/step, i.e. ~1500 steps in 8 minutes.
* ``imhn_test`` - unit tests only: 1 stack, order 2 (3 output scales: 16, 8,
  4 px), width 16, 64x64, 174 layers, 50 k params.
* ``*_tiny`` top-down - MobileNetV2 alpha 0.35 at 128x96 (32x24 heatmaps).
"""
from __future__ import annotations

import copy
import dataclasses

from keras_pose.checks import PRESET_NAMES
from keras_pose.models.configs import FasterPoseConfig, IMHNConfig, SimpleBaselineConfig

_PRESETS = {
    # Simple Pose paper models (docs/method_bottom_up.md §3, §6.1).
    "imhn_4s_512": IMHNConfig(),
    "imhn_3s_384": IMHNConfig(stacks=3, input_size=(384, 384)),
    # FasterPose and its SimpleBaseline control (docs/method_top_down.md §2).
    "fasterpose_r50_256x192": FasterPoseConfig(),
    "fasterpose_r50_384x288": FasterPoseConfig(input_size=(384, 288)),
    "simple_baseline_r50_256x192": SimpleBaselineConfig(),
    # Mobile.
    "imhn_mobile": IMHNConfig(stacks=2, width=64, growth=16, feature_width=64, se_reduction=8,
                              input_size=(256, 256)),
    "fasterpose_mnv2_256x192": FasterPoseConfig(backbone="mobilenetv2"),
    "simple_baseline_mnv2_256x192": SimpleBaselineConfig(backbone="mobilenetv2"),
    # Tiny: quickstart and unit tests.
    "imhn_tiny": IMHNConfig(stacks=1, width=32, growth=16, order=4, feature_width=32,
                            se_reduction=8, input_size=(128, 128)),
    "imhn_test": IMHNConfig(stacks=1, width=16, growth=8, order=2, feature_width=16,
                            se_reduction=4, input_size=(64, 64)),
    "fasterpose_tiny": FasterPoseConfig(backbone="mobilenetv2", alpha=0.35, input_size=(128, 96)),
    "simple_baseline_tiny": SimpleBaselineConfig(backbone="mobilenetv2", alpha=0.35,
                                                 input_size=(128, 96)),
}


# The training recipe each preset names (``keras_pose.train.recipes``); a run may
# name another one (``TrainConfig.recipe``).
_RECIPE_OF = {
    "imhn_4s_512": "simple_pose",
    "imhn_3s_384": "simple_pose",
    "imhn_mobile": "simple_pose",
    "imhn_tiny": "quickstart",
    "imhn_test": "quickstart",
    "fasterpose_r50_256x192": "fasterpose",
    "fasterpose_r50_384x288": "fasterpose",
    "fasterpose_mnv2_256x192": "fasterpose",
    "fasterpose_tiny": "fasterpose",
    "simple_baseline_r50_256x192": "simple_baseline",
    "simple_baseline_mnv2_256x192": "simple_baseline",
    "simple_baseline_tiny": "simple_baseline",
}


def preset_recipe(name: str) -> str:
    """The name of the training recipe preset ``name`` trains with by default."""
    if name not in _PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {list_presets()}")
    return _RECIPE_OF[name]


# keras_pose.checks lists the names without importing Keras (the scripts check
# --preset before TensorFlow loads); the two must agree.
if tuple(sorted(_PRESETS)) != PRESET_NAMES:
    raise ImportError("keras_pose.checks.PRESET_NAMES and keras_pose.models.presets disagree: "
                      f"{sorted(set(_PRESETS) ^ set(PRESET_NAMES))}")


def list_presets() -> list:
    """Names of all presets, sorted."""
    return sorted(_PRESETS)


def get_preset(name: str, **overrides):
    """A (validated) copy of preset ``name``'s config, with fields overridden."""
    if name not in _PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {list_presets()}")
    cfg = copy.deepcopy(_PRESETS[name])
    fields = {f.name for f in dataclasses.fields(cfg)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise ValueError(f"preset {name!r} ({type(cfg).__name__}) has no field(s) {unknown}; "
                         f"fields are {sorted(fields)}")
    return cfg.replace(**overrides) if overrides else cfg


def build_model(config, K=None):
    """Build the model a config describes, with Keras module ``K`` (default Keras 3)."""
    if K is None:
        import keras as K
    if isinstance(config, IMHNConfig):
        from keras_pose.models.imhn import build_imhn
        return build_imhn(config, K=K)
    if isinstance(config, FasterPoseConfig):
        from keras_pose.models.fasterpose import build_fasterpose
        return build_fasterpose(config, K=K)
    if isinstance(config, SimpleBaselineConfig):
        from keras_pose.models.simple_baseline import build_simple_baseline
        return build_simple_baseline(config, K=K)
    raise TypeError(f"build_model: unsupported config type {type(config).__name__}")


def for_spec(config, spec):
    """``config`` with its head sized for a KeypointSpec: an IMHN outputs
    ``spec.num_channels`` maps per scale, a top-down model ``spec.num_keypoints``."""
    if isinstance(config, IMHNConfig):
        return config.replace(out_channels=spec.num_channels)
    return config.replace(num_keypoints=spec.num_keypoints)


def from_preset(name: str, **overrides):
    """Build preset ``name`` as a Keras 3 model; ``overrides`` replace config fields
    (e.g. ``from_preset("fasterpose_r50_256x192", weights="imagenet", upscale=4)``)."""
    return build_model(get_preset(name, **overrides))
