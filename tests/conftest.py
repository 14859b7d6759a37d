"""Shared fixtures. Kept free of TensorFlow imports so that runtime tests stay light."""
import os
import pathlib

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
_DEFAULT_SAMPLE = REPO.parent / "shared" / "data" / "coco_sample"


def coco_sample_path() -> pathlib.Path:
    return pathlib.Path(os.environ.get("KERAS_POSE_COCO_SAMPLE", _DEFAULT_SAMPLE))


@pytest.fixture(scope="session")
def coco_sample_dir() -> pathlib.Path:
    """The four real COCO val2017 images (KERAS_POSE_COCO_SAMPLE, or the data folder
    beside the repository); skips if absent."""
    p = coco_sample_path()
    if not (p / "test_coco.json").is_file():
        pytest.skip(f"COCO sample not found at {p} (set KERAS_POSE_COCO_SAMPLE to its folder)")
    return p


_DEFAULT_IBP_SAMPLE = REPO.parent / "shared" / "data" / "ibp_checkpoint_sample"


@pytest.fixture(scope="session")
def ibp_sample_dir() -> pathlib.Path:
    """A checkpoint in the Simple Pose authors' format with their network's outputs
    (KERAS_POSE_IBP_SAMPLE, or the data folder beside the repository); skips if absent."""
    p = pathlib.Path(os.environ.get("KERAS_POSE_IBP_SAMPLE", _DEFAULT_IBP_SAMPLE))
    if not (p / "reference.npz").is_file():
        pytest.skip(f"checkpoint sample not found at {p} (set KERAS_POSE_IBP_SAMPLE to its folder)")
    return p
