"""keras_pose: bottom-up (Simple Pose) and top-down (FasterPose) human pose estimation
on TensorFlow 2 / Keras 3, with quantized TFLite export.

Pins follow the measured stack in docs/tf_stack_notes.md §1: depend on `tensorflow`
(not tensorflow-cpu: tfmot -> tf-keras would pull plain tensorflow in beside it).
"""
from setuptools import find_packages, setup

setup(
    name="keras_pose",
    version="0.1.0",
    description="Multi-person pose estimation (Simple Pose, FasterPose) for Keras 3 and TFLite",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    classifiers=["License :: OSI Approved :: Apache Software License"],
    packages=find_packages(include=["keras_pose", "keras_pose.*"]),
    python_requires=">=3.10,<3.13",
    install_requires=[
        "tensorflow>=2.21,<2.22",
        "keras>=3.15,<3.16",
        "numpy>=2.0,<2.5",
        "ai-edge-litert==2.3.0",
        "opencv-python-headless>=4.10",
        "numba>=0.68,<0.70",  # the decoder's compiled loops (keras_pose/codecs/_kernels.py)
        "pycocotools==2.0.11",
        "absl-py>=1.0",
        "tqdm>=4.60",
        "tensorboard>=2.19",  # TF 2.21 no longer pulls it in; training logs need it
    ],
    extras_require={
        "dev": ["pytest>=7", "pytest-timeout>=2.1", "matplotlib>=3.7"],
        "qat": ["tensorflow-model-optimization==0.8.1", "tf-keras>=2.21,<2.22"],
        "gpu": ["tensorflow[and-cuda]>=2.21,<2.22"],
    },
)
