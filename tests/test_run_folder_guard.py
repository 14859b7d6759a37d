"""A run folder is never silently repurposed (issue case 8).

``train.py`` on a finished run's ``--model_dir`` with another ``--preset`` used to
overwrite ``config.json`` first and then fail restoring the weights with ~450
lines of arrays. Now the saved config is the base of a resumed run; flags that
contradict the model it holds (task, preset, codec) are refused before anything
is written, and compatible changes (epochs, lr, ...) are applied and printed.
"""
import json
import os
import pathlib
import subprocess
import sys

import pytest

from keras_pose.train.config import TrainConfig, resume_check

REPO = pathlib.Path(__file__).resolve().parents[1]


def _finished_run(tmp_path):
    """A run folder as training leaves it: config.json (full codec) + products."""
    from keras_pose.codecs import BodyPartsCodec
    d = tmp_path / "run"
    cfg = TrainConfig(preset="imhn_test", model_dir=str(d), epochs=2).resolved()
    cfg = cfg.replace(codec=BodyPartsCodec(num_scales=3, sigma=3.5).get_config())
    cfg.save(str(d / "config.json"))
    (d / "model.keras").write_bytes(b"weights of the imhn_test model")
    (d / "metrics.json").write_text('{"AP": 0.5}')
    return d, cfg


def _snapshot(d):
    return {p.relative_to(d).as_posix(): p.read_bytes() for p in sorted(d.rglob("*"))
            if p.is_file()}


def _train(*args, cwd):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, str(REPO / "training" / "train.py"), *args],
                          capture_output=True, text=True, cwd=cwd, env=env, timeout=120)


@pytest.mark.parametrize("flags, keys", [
    (["--preset=imhn_tiny"], ["preset: saved 'imhn_test', asked 'imhn_tiny'"]),
    (["--task=top_down", "--preset=fasterpose_tiny"], ["task: saved 'bottom_up'", "preset"]),
    (['--override=codec={"sigma": 9.0}'], ["codec.sigma: saved 3.5, asked 9.0"]),
    (['--override=model={"width": 8}'], ["model: saved None, asked {'width': 8}"]),
])
def test_contradicting_flags_are_refused_before_anything_is_written(tmp_path, flags, keys):
    d, _ = _finished_run(tmp_path)
    before = _snapshot(d)
    res = _train(f"--model_dir={d}", *flags, cwd=tmp_path)
    assert res.returncode != 0
    err = res.stderr.strip()
    assert "Traceback" not in res.stderr and len(err.splitlines()) == 1, res.stderr[-2000:]
    assert str(d / "config.json") in err and "another --model_dir" in err
    for k in keys:
        assert k in err, err
    assert _snapshot(d) == before          # config.json and the products untouched
    assert "tensorflow" not in res.stdout  # refused before TF: no training output at all


def test_resume_merges_compatible_changes_over_the_saved_config(tmp_path):
    d, saved = _finished_run(tmp_path)
    given = {"model_dir": str(d), "epochs": 5, "lr": 1e-4, "preset": "imhn_test"}
    changes = resume_check(saved, given, str(d / "config.json"))
    assert changes == {"epochs": (2, 5), "lr": (saved.lr, 1e-4)}
    # codec fields equal to the saved ones are no conflict; a whole equal codec neither
    assert resume_check(saved, {"codec": {"sigma": 3.5}}, "c") == {}
    assert resume_check(saved, saved.to_dict(), "c") == {}


def test_train_script_resumes_from_the_saved_config(tmp_path):
    """No --preset on resume: the saved run's preset is kept (not the default imhn_tiny)."""
    sys.path.insert(0, str(REPO / "training"))
    try:
        import train as train_script
    finally:
        sys.path.pop(0)
    d, saved = _finished_run(tmp_path)
    F = train_script.F
    try:
        F(["train.py", f"--model_dir={d}", "--epochs=7"])
        c = train_script.build_config()
    finally:
        F.unparse_flags()
    assert (c.preset, c.epochs, c.lr) == ("imhn_test", 7, saved.lr)
    assert json.dumps(c.codec, sort_keys=True) == json.dumps(saved.codec, sort_keys=True)


def test_library_run_checks_too(tmp_path):
    """``train.loop.check_resume`` (called by ``run`` before it writes) refuses a full config."""
    from keras_pose.train.loop import check_resume
    d, saved = _finished_run(tmp_path)
    before = _snapshot(d)
    with pytest.raises(ValueError, match="preset: saved 'imhn_test', asked 'imhn_tiny'"):
        check_resume(saved.replace(preset="imhn_tiny"))
    check_resume(saved.replace(epochs=9))  # compatible: printed, allowed
    assert _snapshot(d) == before
