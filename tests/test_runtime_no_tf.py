"""The phone-side path needs NumPy, OpenCV and ai-edge-litert only: no TensorFlow import."""
import json
import pathlib
import subprocess
import sys

import pytest

import _tiny_pose_model as tiny

REPO = pathlib.Path(__file__).resolve().parents[1]
RUNTIME_MODULES = ["keras_pose", "keras_pose.codecs", "keras_pose.structures",
                   "keras_pose.inference.tflite_runner", "keras_pose.visualize",
                   "keras_pose.tracking", "keras_pose.geometry", "keras_pose.io",
                   "keras_pose.descriptor"]


def test_runtime_modules_import_without_tensorflow():
    code = ("import sys, importlib\n"
            f"for m in {RUNTIME_MODULES!r}: importlib.import_module(m)\n"
            "from keras_pose.inference.tflite_runner import TFLiteRunner\n"
            "from keras_pose.visualize import draw_poses\n"
            "from keras_pose.tracking import PoseTracker\n"
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras', 'tf_keras'))\n"
            "assert not bad, bad\n"
            "print('ok')\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
                       timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr[-2000:]


@pytest.fixture(scope="module")
def exported():
    return tiny.trained_export()


def test_benchmark_runs_without_tensorflow(exported):
    r = subprocess.run([sys.executable, str(REPO / "export" / "benchmark_tflite.py"),
                        "--model", str(exported["fp32"]), "--runs", "5", "--warmup", "1",
                        "--num_threads", "1"], capture_output=True, text=True, cwd=REPO,
                       timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads(r.stdout)  # exactly one JSON object on stdout
    assert res["tensorflow_imported"] is False
    for stage in ("preprocess", "network", "decode", "total"):
        assert 0 < res[stage]["median_ms"] <= res[stage]["p90_ms"]
    assert res["size_bytes"] == exported["fp32"].stat().st_size
    assert res["input_shape"] == [1, 64, 64, 3]


def test_demo_runs_without_tensorflow(exported, tmp_path):
    import cv2
    img = tmp_path / "in.png"
    cv2.imwrite(str(img), exported["images"][0].astype("uint8")[..., ::-1])
    code = ("import sys, runpy\n"
            f"sys.argv = ['demo', '--model', {str(exported['fp32'])!r}, '--input', {str(img)!r},"
            f" '--output', {str(tmp_path / 'o.png')!r}]\n"
            "try:\n    runpy.run_path('mobile_demo/demo.py', run_name='__main__')\n"
            "except SystemExit as e:\n    assert e.code == 0, e.code\n"
            "assert 'tensorflow' not in sys.modules\nprint('ok')\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
                       timeout=120)
    assert r.returncode == 0 and r.stdout.strip().endswith("ok"), r.stderr[-2000:]
    assert (tmp_path / "o.png").is_file()
