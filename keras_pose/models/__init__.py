"""Models: IMHN (bottom-up), FasterPose and SimpleBaseline (top-down), presets, FLOPs.

Builders, configs and presets resolve lazily. The one eager import is
``blocks``: it registers the custom ``DepthToSpace`` layer with Keras, which a
``.keras`` file holding a FasterPose model needs before ``load_model`` (Keras
does not import third-party modules named in a saved config). So importing
this package imports Keras; the TF-free runtime path never imports it.
"""
import importlib

from keras_pose.models import blocks  # noqa: F401  (registers keras_pose>DepthToSpace)

_LAZY = {
    "IMHNConfig": "keras_pose.models.configs",
    "FasterPoseConfig": "keras_pose.models.configs",
    "SimpleBaselineConfig": "keras_pose.models.configs",
    "build_imhn": "keras_pose.models.imhn",
    "inference_model": "keras_pose.models.heads",
    "keep_stacks": "keras_pose.models.imhn",
    "build_fasterpose": "keras_pose.models.fasterpose",
    "fasterpose_inference_model": "keras_pose.models.fasterpose",
    "build_simple_baseline": "keras_pose.models.simple_baseline",
    "DepthToSpace": "keras_pose.models.blocks",
    "depth_to_space_class": "keras_pose.models.blocks",
    "from_preset": "keras_pose.models.presets",
    "get_preset": "keras_pose.models.presets",
    "list_presets": "keras_pose.models.presets",
    "build_model": "keras_pose.models.presets",
    "count_model": "keras_pose.models.flops",
}

__all__ = sorted(_LAZY)


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'keras_pose.models' has no attribute {name!r}")
