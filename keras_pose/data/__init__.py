"""Data: COCO reading, augmentation and the tf.data input pipelines.

``coco`` (pycocotools) and ``transforms`` (OpenCV + NumPy) import without
TensorFlow; ``pipeline`` imports TensorFlow only inside the functions that
build datasets. Names are resolved lazily on first use.
"""
import importlib

_LAZY = {
    "CocoKeypoints": "keras_pose.data.coco",
    "AugmentConfig": "keras_pose.data.transforms",
    "augment_params": "keras_pose.data.transforms",
    "training_affine": "keras_pose.data.transforms",
    "apply_affine_to_sample": "keras_pose.data.transforms",
    "hsv_tint": "keras_pose.data.transforms",
    "bottom_up_dataset": "keras_pose.data.pipeline",
    "bottom_up_eval_dataset": "keras_pose.data.pipeline",
    "BottomUpLoader": "keras_pose.data.pipeline",
    "topdown_dataset": "keras_pose.data.topdown_pipeline",
    "generate_dataset": "keras_pose.data.synthetic",
}

__all__ = sorted(_LAZY)


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'keras_pose.data' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
