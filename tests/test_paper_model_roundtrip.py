"""Round trip of the authors' checkpoint: convert -> export TFLite fp32 -> run both paths.

On the four real COCO sample images the TFLite model must give the same persons
as the Keras model (same count, keypoints within 0.5 px, scores within 1e-3).
The sample checkpoint has random weights: its maps are noise with strong
peaks, which the decoder turns into dozens of persons - a sharp comparison.
"""
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("tensorflow")

import keras_pose  # noqa: E402
from keras_pose.export import ibp_checkpoint as ibp  # noqa: E402
from keras_pose.export.tflite import match_persons  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[1]


def test_converted_sample_keras_and_tflite_agree(ibp_sample_dir, coco_sample_dir, tmp_path):
    model, cfg = ibp.convert_checkpoint(ibp_sample_dir / "checkpoint.pth", input_size=(256, 256))
    ibp.save_model_dir(model, cfg, tmp_path / "run", ibp_sample_dir / "checkpoint.pth")
    out = tmp_path / "fp32"
    r = subprocess.run([sys.executable, str(REPO / "export" / "export_tflite.py"),
                        "--model_dir", str(tmp_path / "run"), "--quantize", "fp32",
                        "--calibration_source", "images", "--calibration_dir", str(coco_sample_dir),
                        "--calibration_images", "4", "--output", str(out)],
                       capture_output=True, text=True, cwd=REPO,
                       env={**os.environ, "PYTHONPATH": str(REPO)})
    assert r.returncode == 0, r.stderr[-2000:]
    keras_pred = keras_pose.load(tmp_path / "run")
    lite_pred = keras_pose.load(out / "model.tflite")
    images = sorted(coco_sample_dir.glob("*.jpg"))
    assert len(images) == 4
    total = 0
    for path in images:
        a, b = keras_pred.predict(str(path)), lite_pred.predict(str(path))
        assert len(a) == len(b), path.name
        total += len(a)
        pairs = match_persons(a, b)
        assert len(pairs) == len(a)
        for i, j, _ in pairs:
            assert np.array_equal(a.keypoints[i, :, 2] > 0, b.keypoints[j, :, 2] > 0)
            found = a.keypoints[i, :, 2] > 0
            d = np.linalg.norm(a.keypoints[i, found, :2] - b.keypoints[j, found, :2], axis=1)
            assert d.max() < 0.5
            assert abs(float(a.scores[i]) - float(b.scores[j])) < 1e-3
    assert total > 0, "the decoder should find persons in the sample's maps"
    # The authors' protocol through the one-call loader (Keras only: TFLite is fixed-size).
    paper = keras_pose.load(tmp_path / "run", protocol="paper", scales=(0.5, 1.0))
    assert (paper.fuse_at, paper.flip, paper.scales, paper.input_height) == \
        ("image", True, (0.5, 1.0), 512)
    assert paper.codec.config.grouping == "paper"
    with pytest.raises(ValueError, match="fixed input size"):
        keras_pose.load(out / "model.tflite", protocol="paper")
