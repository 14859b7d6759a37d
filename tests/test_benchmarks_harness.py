"""benchmarks/_harness.py: the timer alternates and warms up, the summary is right, the
ground-truth-map oracle maps poses back through the evaluation's affine, and the module
imports without TensorFlow (export/benchmark_tflite.py relies on it)."""
import pathlib
import subprocess
import sys

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks import _harness  # noqa: E402


def test_time_rounds_warms_up_then_alternates():
    calls = []
    fns = {name: (lambda name=name: calls.append(name) or name) for name in ("a", "b", "c")}
    seen = []
    times = _harness.time_rounds(fns, runs=3, warmup=2, on_call=lambda n, out: seen.append((n, out)))
    assert calls[:6] == ["a", "a", "b", "b", "c", "c"]          # warm-up, each in turn
    assert calls[6:] == ["a", "b", "c"] * 3                     # then alternating rounds
    assert seen == [(n, n) for n in ["a", "b", "c"] * 3]        # timed calls only
    assert {k: len(v) for k, v in times.items()} == {"a": 3, "b": 3, "c": 3}
    assert all(t >= 0 for v in times.values() for t in v)


def test_summary():
    s = _harness.summary([5.0, 1.0, 3.0, 2.0, 4.0])
    assert s["median_ms"] == 3.0 and s["min_ms"] == 1.0
    assert np.isclose(s["p10_ms"], 1.4) and np.isclose(s["p90_ms"], 4.6)


def test_oracle_maps_ground_truth_back_through_the_affine():
    from keras_pose.codecs import BodyPartsCodec
    from keras_pose.skeleton import COCO

    # One upright person in a 200 x 100 (h x w) image, framed into a 128 x 128 input by
    # a letterbox-like scale 0.64 + shift: the oracle must return original pixels.
    x = np.array([50, 48, 52, 46, 54, 42, 58, 40, 60, 38, 62, 45, 55, 44, 56, 44, 56], float)
    y = np.array([40, 37, 37, 39, 39, 60, 60, 85, 85, 105, 105, 115, 115, 145, 145, 175, 175], float)
    kps = np.stack([x, y, np.full(17, 2.0)], -1)[None]
    m = np.array([[0.64, 0, 32], [0, 0.64, 0]], np.float64)
    codec = BodyPartsCodec(sigma=3.5, limb_sigma=2.75)
    found = _harness.oracle_results([(7, kps, m)], codec, (128, 128))
    poses = found[7]
    assert len(poses) == 1 and poses.keypoints.shape == (1, COCO.num_keypoints, 3)
    err = np.abs(poses.keypoints[0, :, :2] - kps[0, :, :2]).max()
    assert err < 3.0, err   # a few original pixels: one map cell is 4 / 0.64 = 6 px


def test_imports_without_tensorflow():
    code = ("import sys; sys.path.insert(0, %r); import benchmarks._harness; "
            "assert 'tensorflow' not in sys.modules" % str(REPO))
    subprocess.run([sys.executable, "-c", code], check=True)
