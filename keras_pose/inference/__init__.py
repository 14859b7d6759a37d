"""Inference: networks (Keras / LiteRT), the bottom-up and top-down predictors, load().

Names resolve lazily so that importing this package never imports TensorFlow;
only building a ``KerasNetwork`` (or loading a ``.keras``) imports Keras.
"""
import importlib

_LAZY = {
    "PosePredictor": "keras_pose.inference.predictor",
    "BottomUpPredictor": "keras_pose.inference.predictor",
    "KerasNetwork": "keras_pose.inference.networks",
    "LiteRTNetwork": "keras_pose.inference.networks",
    "load": "keras_pose.inference.loader",
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
