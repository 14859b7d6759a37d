"""Atomic products: a kill or a failure at any step leaves the old complete product or the new one.

Issue case 7: an export killed midway over an earlier export left the new
``model.tflite`` beside the old ``model.json``. The export now validates the graph
and writes its sidecar under temporary names, renames the graph and then the
sidecar; the sidecar's ``tflite_sha256`` catches the instant between the renames.
"""
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from keras_pose.io import atomic_path, atomic_write_bytes, atomic_write_json

REPO = pathlib.Path(__file__).resolve().parents[1]


def _files(folder):
    return {p.name: p.read_bytes() for p in sorted(pathlib.Path(folder).iterdir())}


# ------------------------------------------------------------------ the writers
def test_writer_failure_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "metrics.json"
    atomic_write_json(path, {"AP": 0.5})
    with pytest.raises(TypeError):
        atomic_write_json(path, {"AP": object()})      # not JSON: fails before any rename
    with pytest.raises(RuntimeError):
        with atomic_path(path) as tmp:
            pathlib.Path(tmp).write_text('{"AP": 0.')  # half written, then the writer dies
            raise RuntimeError("killed")
    assert json.loads(path.read_text()) == {"AP": 0.5}
    assert os.listdir(tmp_path) == ["metrics.json"]
    atomic_write_bytes(path, b'{"AP": 0.6}')
    assert json.loads(path.read_text()) == {"AP": 0.6} and os.listdir(tmp_path) == ["metrics.json"]


def test_atomic_path_keeps_the_suffix_writers_check(tmp_path):
    with atomic_path(tmp_path / "last.weights.h5", suffix=".weights.h5") as tmp:
        assert tmp.endswith(".weights.h5") and os.path.dirname(tmp) == str(tmp_path)
        pathlib.Path(tmp).write_bytes(b"w")
    assert (tmp_path / "last.weights.h5").read_bytes() == b"w"


def test_writer_killed_midway_leaves_the_old_file(tmp_path):
    """A process SIGKILLed while writing a big file: the final name keeps the old bytes."""
    path = tmp_path / "model.tflite"
    path.write_bytes(b"old")
    code = ("import sys, pathlib; from keras_pose.io import atomic_path\n"
            f"with atomic_path({str(path)!r}) as tmp:\n"
            "    f = open(tmp, 'wb'); f.write(b'x' * 1000); f.flush()\n"
            "    print('writing', flush=True); sys.stdin.read()\n")
    p = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True,
                         env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert p.stdout.readline().strip() == "writing"
    p.send_signal(signal.SIGKILL)
    p.wait(timeout=30)
    assert path.read_bytes() == b"old"


# ---------------------------------------------------------------- the export
@pytest.fixture(scope="module")
def two_models(tmp_path_factory):
    """Two tiny IMHNs (imhn_test, 64x64) with different weights + inputs; b is saved as a
    run folder (model.keras + config.json) for the export script."""
    import keras

    from keras_pose.descriptor import describe
    from keras_pose.models.presets import from_preset, get_preset
    from keras_pose.train.config import TrainConfig
    d = tmp_path_factory.mktemp("models")
    keras.utils.set_random_seed(0)
    a = from_preset("imhn_test")
    b = from_preset("imhn_test")
    desc = describe(get_preset("imhn_test"), preset="imhn_test")
    b.save(d / "model.keras")
    TrainConfig(preset="imhn_test", model_dir=str(d)).save(str(d / "config.json"), desc)
    images = np.random.default_rng(0).uniform(0, 255, (2, 64, 64, 3)).astype(np.float32)
    return a, b, d, images, desc


def _export(model, out, images, desc):
    from keras_pose.export import tflite as export_lib
    return export_lib.export_tflite(model, out, "fp32", images, log=lambda m: None,
                                    descriptor=desc)


@pytest.fixture(scope="module")
def converted(two_models, tmp_path_factory):
    """Model a exported once (a template folder) and model b's converted bytes (each
    conversion costs tens of seconds on a busy CPU, so the tests below reuse them)."""
    from keras_pose.export import tflite as export_lib
    a, b, _, images, desc = two_models
    template = tmp_path_factory.mktemp("template") / "export"
    _export(a, template, images, desc)
    return template, export_lib.convert(export_lib.build_export_model(b, desc), "fp32")


@pytest.fixture()
def exported_a(converted, tmp_path, monkeypatch):
    """A folder holding model a's complete export; converting b returns its cached bytes."""
    from keras_pose.export import tflite as export_lib
    template, b_bytes = converted
    out = tmp_path / "export"
    shutil.copytree(template, out)
    monkeypatch.setattr(export_lib, "convert", lambda *args, **kwargs: b_bytes)
    return out, _files(out)


def _runner_ok(folder):
    from keras_pose.inference.tflite_runner import TFLiteRunner
    TFLiteRunner(folder / "model.tflite", num_threads=1)


@pytest.mark.parametrize("step", ["convert", "validate", "sidecar"])
def test_export_failing_at_any_step_keeps_the_earlier_export(two_models, exported_a, monkeypatch,
                                                             step):
    from keras_pose.export import tflite as export_lib
    _, b, _, images, desc = two_models
    out, before = exported_a

    def boom(*args, **kwargs):
        raise RuntimeError(f"killed during {step}")
    target = {"convert": "convert", "validate": "validate_export", "sidecar": "write_sidecar"}
    monkeypatch.setattr(export_lib, target[step], boom)
    with pytest.raises(RuntimeError, match=f"killed during {step}"):
        _export(b, out, images, desc)
    assert _files(out) == before  # both files, byte for byte, and no temporary left
    _runner_ok(out)


def test_between_the_two_renames_the_runner_refuses_the_mixed_pair(two_models, exported_a,
                                                                  monkeypatch):
    """The only instant with the new graph beside the old sidecar is refused, not misread."""
    from keras_pose.inference.tflite_runner import TFLiteRunnerError
    _, b, _, images, desc = two_models
    out, before = exported_a
    real = os.replace

    def replace(src, dst):
        if os.path.basename(dst) == "model.json":
            raise OSError("killed between the renames")
        return real(src, dst)
    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(OSError, match="between the renames"):
        _export(b, out, images, desc)
    monkeypatch.setattr(os, "replace", real)
    after = _files(out)
    assert set(after) == {"model.tflite", "model.json"}  # no temporary left
    assert after["model.json"] == before["model.json"]
    assert after["model.tflite"] != before["model.tflite"]
    with pytest.raises(TFLiteRunnerError, match="describes another model.*re-run the export"):
        _runner_ok(out)
    # re-running the export repairs the folder
    _export(b, out, images, desc)
    _runner_ok(out)


def test_export_process_killed_midway_keeps_the_earlier_export(two_models, exported_a):
    """SIGKILL the export script as soon as the new graph exists (under its temporary name)."""
    _, _, d, _, _ = two_models
    out, before = exported_a
    cmd = [sys.executable, str(REPO / "export" / "export_tflite.py"), "--model_dir", str(d),
           "--output", str(out), "--calibration_images", "2"]
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         env=dict(os.environ, PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL="3"))
    deadline, killed = time.monotonic() + 300, False
    while time.monotonic() < deadline and p.poll() is None:
        if any(n.startswith(".model.tflite.") and os.path.getsize(out / n) > 0
               for n in os.listdir(out)):
            p.send_signal(signal.SIGKILL)
            killed = True
            break
        time.sleep(0.005)
    p.wait(timeout=60)
    assert killed, "the export finished before it could be killed"
    left = _files(out)
    assert {k: v for k, v in left.items() if not k.startswith(".")} == before
    _runner_ok(out)
