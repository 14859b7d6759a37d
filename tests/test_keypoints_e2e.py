"""End to end with a non-COCO keypoint spec FILE: train, evaluate, export, TF-free runner.

A hand-written 14-point CrowdPose-layout spec without body parts (so they are
derived from its skeleton) drives ``training/train.py`` (tiny preset, a few
steps on the synthetic set relabelled with the spec), ``training/evaluate.py``
(no --keypoints: the spec comes from config.json), the int8 TFLite export the
run makes, and the TFLite runner in a process where TensorFlow cannot import.
"""
from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parent.parent

SPEC = {
    "name": "my_crowd",
    "keypoints": ["left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist",
                  "right_wrist", "left_hip", "right_hip", "left_knee", "right_knee",
                  "left_ankle", "right_ankle", "head", "neck"],
    "sigmas": [0.079, 0.079, 0.072, 0.072, 0.062, 0.062, 0.107, 0.107, 0.087, 0.087, 0.089,
               0.089, 0.079, 0.079],
    "flip_pairs": [["left_shoulder", "right_shoulder"], ["left_elbow", "right_elbow"],
                   ["left_wrist", "right_wrist"], ["left_hip", "right_hip"],
                   ["left_knee", "right_knee"], ["left_ankle", "right_ankle"]],
    "skeleton": [["head", "neck"], ["neck", "left_shoulder"], ["neck", "right_shoulder"],
                 ["left_shoulder", "left_elbow"], ["left_elbow", "left_wrist"],
                 ["right_shoulder", "right_elbow"], ["right_elbow", "right_wrist"],
                 ["left_shoulder", "left_hip"], ["right_shoulder", "right_hip"],
                 ["left_hip", "right_hip"], ["left_hip", "left_knee"], ["left_knee", "left_ankle"],
                 ["right_hip", "right_knee"], ["right_knee", "right_ankle"]],
}


def _run(args, timeout=900, **env):
    e = dict(os.environ, PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL="2", **env)
    p = subprocess.run([sys.executable, *args], cwd=REPO, env=e, capture_output=True, text=True,
                       timeout=timeout)
    assert p.returncode == 0, (p.stdout[-3000:], p.stderr[-3000:])
    return p.stdout


@pytest.mark.slow
def test_spec_file_trains_evaluates_exports_and_runs(tmp_path):
    from keras_pose.skeleton import load_spec

    spec_path = tmp_path / "my_keypoints.json"
    spec_path.write_text(json.dumps(SPEC))
    spec = load_spec(str(spec_path))
    run = tmp_path / "run"
    _run(["training/train.py", f"--keypoints={spec_path}", "--preset=imhn_test",
          f"--data_dir={tmp_path / 'data'}", f"--model_dir={run}", "--epochs=1",
          "--steps_per_epoch=3", "--batch_size=2", "--override=synthetic_train_images=12",
          "--override=synthetic_val_images=3"])
    # the run carries the spec itself: nothing downstream needs the file
    spec_path.unlink()
    config = json.loads((run / "config.json").read_text())
    assert config["keypoints"]["name"] == "my_crowd" and config["codec"]["spec"] == config["keypoints"]
    assert load_spec(config["keypoints"]) == spec
    assert load_spec(config["descriptor"]["keypoints"]) == spec
    ann = json.loads((tmp_path / "data" / "annotations" / "person_keypoints_val.json").read_text())
    assert ann["categories"][0]["keypoints"] == SPEC["keypoints"]
    assert all(len(a["keypoints"]) == 42 for a in ann["annotations"])

    side = json.loads((run / "tflite_int8" / "model.json").read_text())
    assert load_spec(side["descriptor"]["keypoints"]) == spec
    assert side["outputs"][0]["shape"][-1] == spec.num_channels == spec.num_limbs + 14 + 2
    assert side["validation"]["max_abs_diff"] < 0.05   # the export computes what Keras does
    assert (run / "demo.png").is_file()

    out = _run(["training/evaluate.py", f"--model_dir={run}", f"--output={tmp_path / 'res.json'}"])
    stats = json.loads(out.strip().splitlines()[-1])
    assert stats["num_images"] == 3 and 0.0 <= stats["AP"] <= 1.0
    for r in json.loads((tmp_path / "res.json").read_text()):
        assert len(r["keypoints"]) == 42

    code = (
        "import sys, glob, json\n"
        "sys.modules['tensorflow'] = None\n"
        "from keras_pose.inference.tflite_runner import TFLiteRunner\n"
        f"r = TFLiteRunner({str(run / 'tflite_int8' / 'model.tflite')!r})\n"
        f"img = sorted(glob.glob({str(tmp_path / 'data' / 'val' / '*.jpg')!r}))[0]\n"
        "p = r(img)\n"
        "print(json.dumps([r.codec.spec.name, list(p.keypoints.shape[1:])]))\n")
    name, shape = json.loads(_run(["-c", code]).strip().splitlines()[-1])
    assert name == "my_crowd" and shape == [14, 3]
