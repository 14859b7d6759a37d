"""The authors' checkpoint -> Keras IMHN: exactness against their network, key checks, stacks.

The shared sample holds a 1-stack checkpoint of theirs (growth 8, float16) and
the 5 maps their own PyTorch network computes from it on a real image: the
converted model must reproduce them (stem, hourglass, SE heads and outputs -
a drift of the builder away from their network fails here). Stack
transitions are checked on a 2-stack network written in their key layout.
"""
import collections
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

import _torch_writer as tw
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # benchmarks/ helpers
from benchmarks._harness import randomise_weights  # noqa: E402
from keras_pose.export import ibp_checkpoint as ibp
from keras_pose.export.torch_checkpoint import load_torch_checkpoint

REPO = pathlib.Path(__file__).resolve().parents[1]
TINY2 = dict(stacks=2, width=16, growth=8, order=2, feature_width=16, se_reduction=4,
             input_size=(64, 64))


def _rel_err(got, ref):
    return float(np.abs(got - ref).max() / np.abs(ref).max())


@pytest.fixture(scope="module")
def sample(ibp_sample_dir):
    ref = np.load(ibp_sample_dir / "reference.npz")
    model, cfg = ibp.convert_checkpoint(ibp_sample_dir / "checkpoint.pth", input_size=(128, 128))
    return {"dir": ibp_sample_dir, "ref": ref, "model": model, "cfg": cfg}


def test_config_inferred_from_shapes(sample):
    c = sample["cfg"]
    assert (c.stacks, c.width, c.growth, c.order, c.out_channels) == (1, 256, 8, 4, 50)
    assert (c.feature_width, c.se_reduction, c.dilated_stem) == (256, 16, True)
    # Trainable weights = their parameters (buffers: BN running stats and counters).
    sd = _sample_sd(sample["dir"])
    params = sum(v.size for k, v in sd.items()
                 if not k.endswith(("running_mean", "running_var", "num_batches_tracked")))
    trainable = sum(int(np.prod(w.shape)) for w in sample["model"].trainable_weights)
    assert trainable == params


@pytest.mark.parametrize("name", ["checkpoint.pth", "checkpoint_legacy.pth"])
def test_reproduces_the_authors_maps(sample, name):
    """All 5 maps within 1e-3 of each map's largest value (RGB 0..255 in, theirs BGR/255)."""
    model, ref = sample["model"], sample["ref"]
    sd = ibp.state_dict_from_checkpoint(load_torch_checkpoint(sample["dir"] / name))
    ibp.set_keras_weights(model, ibp.keras_weights_from_state_dict(sd, sample["cfg"]))
    x = ref["input_rgb255"].astype(np.float32)
    # The reference input is the same image in their convention.
    assert np.allclose(x[..., ::-1] / 255.0, ref["input_bgr01"], atol=1e-6)
    outs = model.predict(x, verbose=0)
    assert len(outs) == 5
    for j, out in enumerate(outs):
        want = ref[f"out_s0_{j}"]
        assert out.shape == want.shape
        assert _rel_err(out, want) <= 1e-3, (name, j, _rel_err(out, want))
    # The image touches the top and left border: the stem's zero padding sees
    # real pixels, so the border cells are part of the check above.
    assert np.abs(x[0, 0, :]).max() > 0


def test_swapped_input_channels_are_caught(sample):
    """The check is sharp: feeding BGR instead of RGB breaks it."""
    ref = sample["ref"]
    out = sample["model"].predict(ref["input_rgb255"][..., ::-1].astype(np.float32), verbose=0)[0]
    assert _rel_err(out, ref["out_s0_0"]) > 1e-2


def _sample_sd(ibp_sample_dir):
    return ibp.state_dict_from_checkpoint(load_torch_checkpoint(ibp_sample_dir / "checkpoint.pth"))


def test_missing_and_unexpected_keys_are_listed(ibp_sample_dir):
    sd = _sample_sd(ibp_sample_dir)
    cfg = ibp.infer_config(sd, (128, 128))
    del sd["features.0.before_regress.2.2.fc.0.bias"]
    del sd["hourglass.0.hg.1.0.convBlock.4.running_var"]
    sd["extra.head.weight"] = np.zeros((3,), np.float32)
    with pytest.raises(ibp.CheckpointMismatchError) as e:
        ibp.keras_weights_from_state_dict(sd, cfg, "ck.pth")
    msg = str(e.value)
    assert msg.startswith("ck.pth:")
    assert "unexpected keys: extra.head.weight" in msg
    assert "missing keys:" in msg and "features.0.before_regress.2.2.fc.0.bias" in msg
    assert "hourglass.0.hg.1.0.convBlock.4.running_var" in msg


def test_prefixes_and_dtypes(ibp_sample_dir):
    """posenet. / module. prefixes, bare or {'weights': sd}, float16 or float32: same weights."""
    raw = load_torch_checkpoint(ibp_sample_dir / "checkpoint.pth")["weights"]
    base = ibp.state_dict_from_checkpoint({"weights": raw})
    bare = {k.replace("posenet.", ""): v for k, v in raw.items()}
    ddp = {"module." + k: v.astype(np.float32) if v.dtype == np.float16 else v
           for k, v in raw.items()}
    for variant in (bare, ddp, {"weights": ddp, "optimizer": {"lr": 0.1}, "epoch": 3}):
        sd = ibp.state_dict_from_checkpoint(variant)
        assert sorted(sd) == sorted(base)
        assert all(np.array_equal(sd[k], base[k]) and sd[k].dtype == base[k].dtype for k in sd)
    assert base["pre.conv1.weight"].dtype == np.float32
    with pytest.raises(ValueError, match="not a tensor"):
        ibp.state_dict_from_checkpoint({"weights": {"a": "b"}})


# ------------------------------------------------------------- 2 stacks

@pytest.fixture(scope="module")
def two_stacks():
    from keras_pose.models.configs import IMHNConfig
    from keras_pose.models.imhn import build_imhn

    cfg = IMHNConfig(**TINY2)
    model = build_imhn(cfg)
    # Weights of real magnitude: the builder's init is ~0, so every output would match.
    randomise_weights(model, bias_std=0.1)
    x = np.random.default_rng(1).uniform(0, 255, (2, 64, 64, 3)).astype(np.float32)
    return cfg, model, x, model.predict(x, verbose=0)


def test_two_stack_key_layout(two_stacks):
    """Their module tree (names and shapes), written independently of the table."""
    cfg, model, _, _ = two_stacks
    sd = ibp.state_dict_from_keras(model, cfg)
    w, g = cfg.width, cfg.growth
    for j in range(3):
        c = w + g * j
        assert sd[f"posenet.merge_features.0.{j}.conv.conv.weight"].shape == (c, w, 1, 1)
        assert sd[f"posenet.merge_preds.0.{j}.conv.conv.weight"].shape == (c, 50, 1, 1)
        assert sd[f"posenet.merge_preds.0.{j}.conv.bn.running_var"].shape == (c,)
        assert sd[f"posenet.features.1.before_regress.{j}.0.conv.weight"].shape == (w, c, 3, 3)
        assert sd[f"posenet.outs.1.{j}.conv.bias"].shape == (50,)
        assert sd[f"posenet.features.0.before_regress.{j}.2.fc.0.weight"].shape == (w // 4, w)
    assert not any(k.startswith("posenet.merge_features.1.") for k in sd)
    assert sd["posenet.hourglass.1.hg.1.4.convBlock.6.weight"].shape == (w + 2 * g, (w + 2 * g) // 2, 1, 1)
    assert sd["posenet.hourglass.0.hg.0.1.skipConv.0.weight"].shape == (w + g, w, 1, 1)
    assert sd["posenet.pre.dilation.5.bn.num_batches_tracked"].shape == ()
    n_keras = sum(len(l.weights) for l in model.layers)
    n_bn = sum(1 for l in model.layers if l.name.endswith("_bn"))
    assert len(sd) == n_keras + n_bn  # + num_batches_tracked per BN


@pytest.mark.parametrize("legacy", [False, True])
def test_two_stack_checkpoint_converts_exactly(two_stacks, tmp_path, legacy):
    """Written in their layout, read back: all
    2 x 3 maps match, stack transitions included; keep_stacks=1 gives stack 0."""
    cfg, model, x, want = two_stacks
    sd = ibp.state_dict_from_keras(model, cfg)
    path = tmp_path / "two.pth"
    tw.save({"epoch": 1, "weights": collections.OrderedDict(sd)}, path, legacy=legacy)
    got_model, got_cfg = ibp.convert_checkpoint(path, input_size=(64, 64))
    assert (got_cfg.stacks, got_cfg.width, got_cfg.growth, got_cfg.order) == (2, 16, 8, 2)
    got = got_model.predict(x, verbose=0)
    assert len(got) == 6
    for a, b in zip(got, want):
        assert _rel_err(a, b) < 1e-5
    one, one_cfg = ibp.build_converted_model(ibp.state_dict_from_checkpoint(
        load_torch_checkpoint(path)), (64, 64), keep_stacks=1)
    assert one_cfg.stacks == 1
    for a, b in zip(one.predict(x, verbose=0), want[:3]):
        assert _rel_err(a, b) < 1e-5


def test_keep_stacks_bounds(two_stacks):
    cfg, model, _, _ = two_stacks
    sd = ibp.state_dict_from_checkpoint(ibp.state_dict_from_keras(model, cfg))
    with pytest.raises(ValueError, match="keep_stacks must be in 1..2"):
        ibp.truncate_stacks(sd, 3)
    kept = ibp.truncate_stacks(sd, 1)
    assert not any(k.startswith(("merge_", "hourglass.1", "features.1", "outs.1")) for k in kept)


def test_builder_drift_is_refused(two_stacks):
    """A Keras layer the table does not know (e.g. a layer added to the builder) fails loudly."""
    import keras
    cfg, model, _, _ = two_stacks
    weights = ibp.keras_weights_from_state_dict(
        ibp.state_dict_from_checkpoint(ibp.state_dict_from_keras(model, cfg)), cfg)
    extra = keras.layers.Dense(3, name="drifted")
    drifted = keras.Model(model.inputs, model.outputs + [extra(model.outputs[0])])
    with pytest.raises(ibp.CheckpointMismatchError, match="drifted"):
        ibp.set_keras_weights(drifted, weights)


def _script(*args):
    return subprocess.run([sys.executable, str(REPO / "export" / "convert_checkpoint.py"), *args],
                          capture_output=True, text=True, cwd=REPO,
                          env={**os.environ, "PYTHONPATH": str(REPO)})


@pytest.fixture(scope="module")
def converted_dir(two_stacks, tmp_path_factory):
    """convert_checkpoint.py on a 2-stack checkpoint with DDP + eval-wrapper prefixes."""
    cfg, model, _, _ = two_stacks
    tmp = tmp_path_factory.mktemp("converted")
    path = tmp / "two.pth"
    tw.save({"weights": ibp.state_dict_from_keras(model, cfg, prefix="module.posenet.")}, path)
    r = _script("--checkpoint", str(path), "--model_dir", str(tmp / "run"), "--input_size", "64")
    assert r.returncode == 0, r.stderr[-2000:]
    return tmp / "run"


def test_script_writes_a_run_folder(two_stacks, converted_dir):
    """model.keras + config.json that the export loader reads like a training run's."""
    from keras_pose.export.tflite import load_keras_model
    from keras_pose.train.config import TrainConfig

    _, _, x, want = two_stacks
    loaded, config = load_keras_model(model_dir=converted_dir)
    assert TrainConfig.from_dict(config).task == "bottom_up"
    assert config["codec"]["config"]["num_scales"] == 3
    got = loaded.predict(x, verbose=0)
    assert len(got) == 6
    for a, b in zip(got, want):
        assert _rel_err(a, b) < 1e-5


def test_keep_stacks_of_a_keras_model(two_stacks):
    from keras_pose.models.imhn import keep_stacks

    _, model, x, want = two_stacks
    one = keep_stacks(model, 1)
    assert [o.shape[1] for o in one.outputs] == [16, 8, 4]
    for a, b in zip(one.predict(x, verbose=0), want[:3]):
        assert np.array_equal(a, b)
    assert keep_stacks(model, 2) is model
    with pytest.raises(ValueError, match="keep_stacks must be in 1..2"):
        keep_stacks(model, 0)


def test_export_first_stack_fp16_with_photo_calibration(converted_dir, coco_sample_dir, tmp_path):
    """export_tflite.py --keep_stacks 1 --quantize fp16 --calibration_source images: the
    TFLite output is stack 0's finest map, validated against Keras."""
    import json
    out = tmp_path / "fp16"
    r = subprocess.run([sys.executable, str(REPO / "export" / "export_tflite.py"),
                        "--model_dir", str(converted_dir), "--keep_stacks", "1",
                        "--quantize", "fp16", "--calibration_source", "images",
                        "--calibration_dir", str(coco_sample_dir), "--calibration_images", "4",
                        "--output", str(out)], capture_output=True, text=True, cwd=REPO,
                       env={**os.environ, "PYTHONPATH": str(REPO)})
    assert r.returncode == 0, r.stderr[-2000:]
    side = json.loads((out / "model.json").read_text())
    assert side["quantize"] == "fp16" and side["keras_output_names"] == ["s0_x0"]
    assert side["validation"]["num_images"] == 4
    assert side["validation"]["correlation"] > 0.999
    bad = subprocess.run([sys.executable, str(REPO / "export" / "export_tflite.py"),
                          "--model_dir", str(converted_dir), "--calibration_source", "images",
                          "--output", str(tmp_path / "x")], capture_output=True, text=True,
                         cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert bad.returncode != 0 and "--calibration_dir" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_script_lists_missing_keys(two_stacks, tmp_path):
    cfg, model, _, _ = two_stacks
    sd = ibp.state_dict_from_keras(model, cfg)
    del sd["posenet.merge_preds.0.1.conv.bn.running_mean"]
    path = tmp_path / "bad.pth"
    tw.save({"weights": sd}, path, legacy=True)
    r = _script("--checkpoint", str(path), "--model_dir", str(tmp_path / "run"))
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert "missing keys: merge_preds.0.1.conv.bn.running_mean" in r.stderr
    assert not (tmp_path / "run" / "model.keras").exists()


def test_conversion_keeps_a_training_run(two_stacks, converted_dir, tmp_path):
    """A folder holding a model that no conversion wrote is refused, nothing replaced;
    an earlier conversion's folder may be written again."""
    cfg, model, _, _ = two_stacks
    run = tmp_path / "trained"
    run.mkdir()
    (run / "model.keras").write_bytes(b"a trained model")
    with pytest.raises(ValueError, match="no conversion wrote"):
        ibp.save_model_dir(model, cfg, run)
    assert (run / "model.keras").read_bytes() == b"a trained model"
    assert not (run / "config.json").exists()
    r = _script("--checkpoint", str(converted_dir.parent / "two.pth"), "--model_dir", str(run))
    assert r.returncode != 0 and "no conversion wrote" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    r = _script("--checkpoint", str(converted_dir.parent / "two.pth"), "--model_dir",
                str(converted_dir), "--input_size", "64")
    assert r.returncode == 0, r.stderr[-2000:]
