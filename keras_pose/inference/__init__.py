"""Inference: preprocessing, the Keras predictor and the TFLite runner.

Names resolve lazily so that importing this package (or the TensorFlow-free
preprocessing and TFLite runner) never imports TensorFlow.
"""
import importlib

_LAZY = {
    "PosePredictor": "keras_pose.inference.predictor",
    "TFLiteRunner": "keras_pose.inference.tflite_runner",
    "TopDownPredictor": "keras_pose.inference.topdown_predictor",
}

__all__ = sorted(_LAZY)


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'keras_pose.inference' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
