"""keras_pose: multi-person pose estimation for Keras 3 and TFLite.

Bottom-up: Simple Pose (Li et al., AAAI 2020) - stacked IMHN, body-part
heatmaps, focal L2 loss, greedy grouping. Top-down: FasterPose (Dai et al.,
TOMM 2022) - low-resolution sub-pixel head with the RCE loss.

``keras_pose.load(path)`` turns a run folder, a ``.keras`` or an exported
``.tflite`` into a predictor: ``load(path).predict(image)`` -> ``Poses``.

Importing the package is cheap and does not import TensorFlow: the runtime
path (codecs, Poses, KeypointSpec, preprocessing, TFLite runner) works with
NumPy, OpenCV and ai-edge-litert alone. TensorFlow-backed names (models,
losses, presets) are resolved lazily on first access.
"""
import importlib

__version__ = "0.1.0"

_LAZY = {
    "KeypointSpec": "keras_pose.skeleton",
    "COCO": "keras_pose.skeleton",
    "load_spec": "keras_pose.skeleton",
    "Poses": "keras_pose.structures",
    "BodyPartsCodec": "keras_pose.codecs",
    "HeatmapCodec": "keras_pose.codecs",
    "from_preset": "keras_pose.models.presets",
    "list_presets": "keras_pose.checks",  # the TF-free name list
    "PosePredictor": "keras_pose.inference",
    "TopDownPredictor": "keras_pose.inference",
    "TFLiteRunner": "keras_pose.inference",
    "RunDescriptor": "keras_pose.descriptor",
    "load": "keras_pose.inference.loader",
}

__all__ = sorted(_LAZY) + ["__version__"]


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'keras_pose' has no attribute {name!r}")
