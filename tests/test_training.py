"""Training: config and flags, schedule, distribution parity, multi-worker, resume, NaN guard.

Runs that need their own TensorFlow process (logical devices, TF_CONFIG, a kill)
go through subprocesses: tests/_train_worker.py and tests/_dist_step.py.
"""
import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from keras_pose.train.config import TrainConfig, apply_overrides

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parent


def _env(**extra):
    env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1", TF_CPP_MIN_LOG_LEVEL="2")
    env.pop("TF_CONFIG", None)
    env.update(extra)
    return env


# ------------------------------------------------------------------ config / flags
def test_config_validation_and_overrides():
    with pytest.raises(ValueError, match="loss 'rce' is for the top-down task"):
        TrainConfig(loss="rce").validate()
    with pytest.raises(ValueError, match="dataset=coco needs"):
        TrainConfig(dataset="coco").validate()
    with pytest.raises(ValueError, match="strategy='x' is not one of"):
        TrainConfig(strategy="x").validate()
    c = apply_overrides(TrainConfig(), ["lr=0.5", "lr_boundaries=[3, 4]", "model_dir=out"])
    assert c.lr == 0.5 and c.lr_boundaries == (3, 4) and c.model_dir == "out"
    with pytest.raises(ValueError, match="not a TrainConfig field"):
        apply_overrides(TrainConfig(), ["nope=1"])
    r = TrainConfig(preset="imhn_4s_512").resolved()
    assert (r.optimizer, r.lr, r.weight_decay, r.lr_decay_every, r.warmup_epochs, r.loss) == \
        ("sgd", 2.5e-5, 5e-4, 15, 3.0, "focal_l2")
    t = TrainConfig(task="top_down", preset="fasterpose_r50_256x192", epochs=140).resolved()
    assert (t.optimizer, t.lr, t.lr_boundaries, t.loss) == ("adam", 1e-3, (90, 120), "rce")
    again = TrainConfig.from_dict(json.loads(r.to_json()))
    assert again == r
    # Optional tuple fields (LR boundaries, test scales) come back from JSON as tuples.
    q = TrainConfig().resolved()
    assert q.lr_boundaries and q.eval_scales == (1.0, 1.5) and q.loss == "l2"
    assert TrainConfig.from_dict(json.loads(q.to_json())) == q


def test_flags_and_flagfile(tmp_path):
    sys.path.insert(0, str(REPO / "training"))
    try:
        import train as train_script
    finally:
        sys.path.pop(0)
    cfg_file = tmp_path / "c.json"
    TrainConfig(epochs=7, lr=0.25).save(str(cfg_file))
    flagfile = tmp_path / "f.flags"
    flagfile.write_text(f"--config_file={cfg_file}\n--batch_size=6\n--preset=imhn_test\n")
    F = train_script.F
    try:
        F(["train.py", f"--flagfile={flagfile}", "--epochs=9", "--override=seed=3"])
        c = train_script.build_config()
    finally:
        F.unparse_flags()
    # file < flags < overrides; untouched fields keep the file's values
    assert (c.epochs, c.lr, c.batch_size, c.preset, c.seed) == (9, 0.25, 6, "imhn_test", 3)


def test_schedule_warmup_and_steps():
    from keras_pose.train.schedules import WarmupStepSchedule

    s = WarmupStepSchedule(1.0, steps_per_epoch=10, warmup_epochs=3, decay_every=15, factor=0.2)
    lr = lambda step: float(s(step))  # noqa: E731
    assert lr(0) == pytest.approx(1 / 30) and lr(29) == pytest.approx(1.0)
    assert lr(149) == pytest.approx(1.0) and lr(150) == pytest.approx(0.2)
    assert lr(300) == pytest.approx(0.04)
    b = WarmupStepSchedule(1e-3, steps_per_epoch=2, factor=0.1, boundaries=(90, 120))
    assert float(b(179)) == pytest.approx(1e-3) and float(b(180)) == pytest.approx(1e-4)
    assert float(b(240)) == pytest.approx(1e-5)
    again = WarmupStepSchedule(**s.get_config())
    assert float(again(77)) == pytest.approx(lr(77))


def test_nan_guard_raises_and_names_the_step():
    import keras

    from keras_pose.train.callbacks import NanGuard, TrainingDiverged

    g = NanGuard()
    g.on_epoch_begin(2)
    g.on_train_batch_end(0, {"loss": 1.0})
    with pytest.raises(TrainingDiverged, match="loss became nan at epoch 3, batch 5"):
        g.on_train_batch_end(4, {"loss": float("nan")})
    assert isinstance(g, keras.callbacks.Callback)


def test_time_budget_counts_from_the_given_start():
    import time
    import types

    from keras_pose.train.callbacks import TimeBudget

    def run(budget):
        budget.set_model(types.SimpleNamespace(stop_training=False))   # the attribute it sets
        budget.on_train_begin()
        budget.on_train_batch_end(0)
        return budget.model.stop_training, budget.stopped_early

    # Started 10 s before fit (set-up, callbacks): a 5 s budget is already spent.
    assert run(TimeBudget(5.0, start=time.monotonic() - 10.0)) == (True, True)
    # Without a start the clock begins at on_train_begin; 0 disables the budget.
    assert run(TimeBudget(5.0)) == (False, False)
    assert run(TimeBudget(0.0, start=time.monotonic() - 10.0)) == (False, False)


def test_synthetic_set_is_regenerated_when_its_preset_changes(tmp_path, monkeypatch):
    from keras_pose.train import loop as train_lib
    from keras_pose.data import synthetic

    calls = []

    def fake_generate(root, **kw):
        calls.append(kw["config"])
        for split in ("train", "val"):
            ann = pathlib.Path(root) / "annotations" / f"person_keypoints_{split}.json"
            ann.parent.mkdir(parents=True, exist_ok=True)
            ann.write_text("{}")

    monkeypatch.setattr(synthetic, "generate_dataset", fake_generate)
    cfg = TrainConfig(data_dir=str(tmp_path), synthetic_preset="easy")
    train_lib.prepare_data(cfg, (64, 64))
    train_lib.prepare_data(cfg, (64, 64))
    assert calls == ["easy"]                      # the stamp matches: reused
    monkeypatch.setitem(synthetic.PRESETS, "easy", synthetic.PRESETS["easy"].replace(clutter=0))
    train_lib.prepare_data(cfg, (64, 64))
    assert calls == ["easy", "easy"]              # same name, other knobs: regenerated


# ------------------------------------------------------------------ end-to-end runs
@pytest.fixture(scope="module")
def synthetic_dir(tmp_path_factory):
    from keras_pose.data import synthetic

    root = tmp_path_factory.mktemp("synthetic")
    synthetic.generate_dataset(root, num_train=24, num_val=4, seed=1, image_size=(64, 64),
                               config="easy", progress=False)
    # Stamp it so train_lib reuses it rather than regenerating.
    (root / "generated.json").write_text(json.dumps(
        {"num_train": 24, "num_val": 4, "seed": 1, "image_size": [64, 64], "preset": "easy",
         "knobs": synthetic.PRESETS["easy"].to_dict()}))
    return root


def _config(synthetic_dir, model_dir, **kw):
    base = dict(preset="imhn_test", data_dir=str(synthetic_dir), synthetic_train_images=24,
                synthetic_preset="easy",
                synthetic_val_images=4, synthetic_seed=1, model_dir=str(model_dir), epochs=2,
                steps_per_epoch=2, batch_size=4, deterministic=True, export_int8=False,
                demo_image=False, eval_every=0, seed=5)
    base.update(kw)
    return TrainConfig(**base)


def _run_worker(config, out, env=None, timeout=600, nan_at_step=None):
    cfg_path = pathlib.Path(str(out) + ".json")
    cfg_path.write_text(config.to_json())
    extra = [] if nan_at_step is None else [str(nan_at_step)]
    return subprocess.Popen([sys.executable, str(HERE / "_train_worker.py"), str(cfg_path), str(out)]
                            + extra,
                            env=env or _env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)


def _summary(out):
    """The worker's TRAIN-OK JSON line. TensorFlow may log after it (a multi-worker peer
    that exits first makes the coordination service print an error at shutdown)."""
    return json.loads(out.split("TRAIN-OK", 1)[1].splitlines()[0])


def _weights(path):
    with np.load(path) as z:
        return [z[k] for k in sorted(z.files, key=lambda s: int(s.split("_")[1]))]


@pytest.mark.slow
def test_mirrored_two_cpus_matches_one_device():
    proc = subprocess.run([sys.executable, str(HERE / "_dist_step.py")], env=_env(),
                          capture_output=True, text=True, timeout=600)
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT")]
    assert proc.returncode == 0 and line, proc.stdout[-3000:] + proc.stderr[-3000:]
    vals = dict(kv.split("=") for kv in line[0].split()[1:])
    assert float(vals["moved"]) > 1e-3        # the step changed the weights
    assert float(vals["diff_trainable"]) < 1e-5   # ... identically with 2 replicas
    assert float(vals["diff"]) < 1e-5             # BN statistics too (relative to their scale)


@pytest.mark.slow
def test_nan_injected_run_stops_cleanly(synthetic_dir, tmp_path):
    cfg = _config(synthetic_dir, tmp_path / "run", epochs=3)
    proc = _run_worker(cfg, tmp_path / "w.npz", nan_at_step=3)   # test-only dataset wrapper
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 3, out[-3000:]
    assert "TRAIN-ERROR TrainingDiverged: loss became nan at epoch 2, batch 2" in out
    last = tmp_path / "run" / "checkpoints" / "last.weights.h5"
    assert last.is_file()                       # epoch 1's checkpoint survives ...
    from keras_pose.models import presets
    m = presets.from_preset("imhn_test")
    m.load_weights(str(last))
    assert all(np.isfinite(w).all() for w in m.get_weights())  # ... and is finite


@pytest.mark.slow
def test_kill_and_resume_matches_uninterrupted(synthetic_dir, tmp_path):
    ref = _run_worker(_config(synthetic_dir, tmp_path / "ref", epochs=3), tmp_path / "ref.npz")
    out, _ = ref.communicate(timeout=600)
    assert ref.returncode == 0, out[-3000:]

    run_dir = tmp_path / "killed"
    cfg = _config(synthetic_dir, run_dir, epochs=3)
    meta = run_dir / "backup" / "backup.json"
    proc = _run_worker(cfg, tmp_path / "killed.npz")
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and proc.poll() is None:
        if meta.is_file() and json.loads(meta.read_text() or "{}").get("epoch", 0) >= 1:
            proc.send_signal(signal.SIGKILL)    # die somewhere inside epoch 2 (or 3)
            break
        time.sleep(0.05)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    resumed = _run_worker(cfg, tmp_path / "killed.npz")
    out, _ = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, out[-3000:]
    assert "Resuming" in out
    summary = _summary(out)
    assert summary["epochs_completed"] == 3
    a, b = _weights(tmp_path / "ref.npz"), _weights(tmp_path / "killed.npz")
    assert max(float(np.abs(x - y).max()) for x, y in zip(a, b)) < 1e-6


def _free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


@pytest.mark.slow
def test_multi_worker_two_processes_on_loopback(synthetic_dir, tmp_path):
    ports = _free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    procs = []
    for i in range(2):
        env = _env(TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}}))
        cfg = _config(synthetic_dir, tmp_path / "mw", epochs=1, strategy="multi_worker",
                      deterministic=False)
        procs.append(_run_worker(cfg, tmp_path / f"w{i}.npz", env=env))
    outs = [p.communicate(timeout=600)[0] for p in procs]
    for p, o in zip(procs, outs):
        assert p.returncode == 0, o[-3000:]
    s0 = _summary(outs[0])
    assert s0["replicas"] == 2 and s0["epochs_completed"] == 1
    a, b = _weights(tmp_path / "w0.npz"), _weights(tmp_path / "w1.npz")
    assert max(float(np.abs(x - y).max()) for x, y in zip(a, b)) == 0.0
    assert (tmp_path / "mw" / "model.keras").is_file()          # the chief wrote the model
