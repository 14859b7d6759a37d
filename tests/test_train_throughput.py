"""benchmarks/train_throughput.py on the CPU: a tiny preset through the real training set-up.

The run goes through its own process, as on a GPU machine (the precision policy is global).
"""
import json
import os
import pathlib
import subprocess
import sys

REPO = pathlib.Path(__file__).resolve().parents[1]


def _run(*args):
    env = dict(os.environ, PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.run([sys.executable, str(REPO / "benchmarks" / "train_throughput.py"), *args],
                          capture_output=True, text=True, env=env, timeout=300)


def test_throughput_json_on_cpu(tmp_path):
    p = _run("--preset", "imhn_test", "--batch_size", "2", "--steps", "4", "--warmup_steps", "1",
             "--images", "8", "--data_dir", str(tmp_path / "data"))
    assert p.returncode == 0, p.stderr[-3000:]
    r = json.loads(p.stdout.strip().splitlines()[-1])
    for key in ("preset", "task", "input_size", "batch_size", "precision", "jit_compile",
                "images_per_s", "step_ms_median", "step_ms_p10_p90", "timed_steps",
                "first_step_s", "peak_mb", "memory", "device", "date"):
        assert key in r, key
    assert (r["preset"], r["task"], r["input_size"]) == ("imhn_test", "bottom_up", [64, 64])
    assert (r["batch_size"], r["precision"], r["jit_compile"], r["timed_steps"]) == \
        (2, "float32", False, 4)
    assert r["images_per_s"] > 0 and r["step_ms_median"] > 0
    # images/s is the batch over the median step time
    assert abs(r["images_per_s"] - 2000.0 / r["step_ms_median"]) < 0.02 * r["images_per_s"] + 0.01
    # p10 <= median <= p90, and tracing makes the first step the slowest
    assert r["step_ms_p10_p90"][0] <= r["step_ms_median"] <= r["step_ms_p10_p90"][1]
    assert r["first_step_s"] * 1000 > r["step_ms_median"]
    assert r["device"]["kind"] in ("CPU", "GPU") and r["peak_mb"] > 100
    assert r["final_loss"] == r["final_loss"]  # finite, not NaN
    # the synthetic set was generated at the preset's size, into the folder asked for
    assert (tmp_path / "data" / "annotations" / "person_keypoints_train.json").is_file()


def test_bad_flag_is_one_line():
    p = _run("--batch_size", "0")
    assert p.returncode != 0 and "--batch_size must be >= 1" in p.stderr
