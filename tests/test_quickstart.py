"""The README quickstart: ``python training/train.py`` with no flags.

Fast: the resolved default config is the one the README documents (tiny
bottom-up preset on the synthetic ``quickstart`` set, a training budget under
10 minutes, a schedule that completes inside it). Slow: the script end to end
on a tiny budget through evaluation, int8 export and the demo picture.
"""
import json
import os
import pathlib
import subprocess
import sys

import pytest

from keras_pose.train.config import TrainConfig

REPO = pathlib.Path(__file__).resolve().parents[1]


def test_quickstart_defaults_match_the_readme():
    cfg = TrainConfig().resolved()
    assert cfg.task == "bottom_up" and cfg.preset == "imhn_tiny"
    assert cfg.dataset == "synthetic" and cfg.synthetic_preset == "quickstart"
    # The val split is never shrunk below 100 images and is drawn from the same preset.
    assert cfg.synthetic_val_images >= 100
    # The safety net: training never runs past 10 minutes, whatever the machine.
    assert 0 < cfg.time_budget_s <= 600
    # The step-decay drop must fall inside the planned epochs (it is what the
    # AP curve needs) and the run ends with evaluation and the products.
    assert cfg.optimizer == "adam" and cfg.lr_boundaries
    assert all(0 < b < cfg.epochs for b in cfg.lr_boundaries)
    assert cfg.export_int8 and cfg.demo_image
    assert cfg.steps_per_epoch is not None and cfg.steps_per_epoch * cfg.epochs > 0


def test_quickstart_preset_is_an_easier_easy():
    from keras_pose.data._figure import POSTURES
    from keras_pose.data.synthetic import PRESETS

    q, easy = PRESETS["quickstart"], PRESETS["easy"]
    # Same overlap, truncation and crowds: grouping stays the point.
    for name in ("min_figures", "overlap", "truncation", "crowd_prob"):
        assert getattr(q, name) == getattr(easy, name), name
    # Fewer and larger persons, milder rendering nuisance.
    assert 2 <= q.max_figures <= easy.max_figures and q.min_height >= easy.min_height
    assert q.clutter <= easy.clutter and q.noise_std <= easy.noise_std
    assert q.blur_prob <= easy.blur_prob and q.texture_prob <= easy.texture_prob
    # Mostly upright, camera-facing figures, yet every posture and view still occurs.
    hard = [POSTURES.index(n) for n in ("bend", "sit", "squat", "kneel", "lie")]

    def hard_share(c):
        return sum(c.posture_weights[i] for i in hard) / sum(c.posture_weights)

    assert min(q.posture_weights) > 0 and hard_share(q) < hard_share(easy)
    assert 0 < q.profile_prob + q.back_view_prob < easy.profile_prob + easy.back_view_prob
    assert q.profile_prob > 0 and q.back_view_prob > 0


@pytest.mark.slow
def test_train_script_end_to_end_with_products(tmp_path):
    model_dir, data_dir = tmp_path / "run", tmp_path / "data"
    cmd = [sys.executable, str(REPO / "training" / "train.py"),
           f"--model_dir={model_dir}", f"--data_dir={data_dir}", "--preset=imhn_test",
           "--time_budget_s=20", "--epochs=2", "--steps_per_epoch=3", "--batch_size=4",
           "--override=synthetic_train_images=64", "--override=synthetic_val_images=8"]
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=420)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for name in ("model.keras", "config.json", "metrics.json", "demo.png",
                 "tflite_int8/model.tflite", "tflite_int8/model.json"):
        assert (model_dir / name).is_file(), name
    metrics = json.loads((model_dir / "metrics.json").read_text())
    assert metrics["preset"] == "imhn_test"
    assert 0.0 <= metrics["val"]["AP"] <= 1.0
    assert metrics["tflite_int8"]["size_bytes"] > 0
    assert "val AP" in proc.stdout
    saved = TrainConfig.load(str(model_dir / "config.json"))
    assert saved.synthetic_val_images == 8 and saved.preset == "imhn_test"
