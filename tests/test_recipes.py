"""Named training recipes: the preset names its recipe, a run may name another, and the
quickstart's resolved config is pinned field by field (the README command depends on it)."""
import json

import pytest

from keras_pose.models import presets
from keras_pose.train import recipes
from keras_pose.train.config import TrainConfig

# `python training/train.py` with no flags. Changing any value here changes what the
# README quickstart trains and the AP it reports (docs/benchmarks.md).
QUICKSTART = {
    "annotations": None,
    "bad_annotations": "skip",
    "augment": {"max_rotation": 15.0, "max_shift": 16.0, "scale_max": 1.45, "scale_min": 0.6,
                "target_dist": 0.6},
    "batch_size": 8,
    "coco_dir": None,
    "codec": {"limb_sigma": 2.75, "min_limb_length": 4.0, "sigma": 3.5},
    "cpu_replicas": 0,
    "data_dir": "runs/synthetic",
    "dataset": "synthetic",
    "demo_image": True,
    "deterministic": False,
    "epochs": 28,
    "eval_every": 0,
    "eval_flip": True,
    "eval_max_images": None,
    "eval_scales": (1.0, 1.5),
    "export_int8": True,
    "images_dir": None,
    "init_from": None,
    "jit_compile": False,
    "keypoints": None,
    "loss": "l2",
    "lr": 0.001,
    "lr_boundaries": (21,),
    "lr_decay_every": None,
    "lr_decay_factor": 0.2,
    "mixed_precision": "auto",
    "model_dir": "runs/quickstart",
    "momentum": 0.9,
    "optimizer": "adam",
    "jit_compile": False,
    "bad_annotations": "skip",
    "preset": "imhn_tiny",
    "model": None,
    "recipe": "quickstart",
    "seed": 0,
    "steps_per_epoch": 100,
    "strategy": "auto",
    "sync_batchnorm": True,
    "synthetic_preset": "quickstart",
    "synthetic_seed": 0,
    "synthetic_train_images": 1200,
    "synthetic_val_images": 100,
    "task": "bottom_up",
    "time_budget_s": 570.0,
    "val_annotations": None,
    "teacher": None,
    "teacher_cache": None,
    "teacher_scales": None,
    "teacher_flip": True,
    "teacher_weight": 1.0,
    "unlabeled_dir": None,
    "unlabeled_framing": "image",
    "val_images_dir": None,
    "warmup_epochs": 1.0,
    "weight_decay": 0.0,
}


def test_resolved_quickstart_config_is_pinned_field_by_field():
    cfg = TrainConfig().resolved()
    got = {k: getattr(cfg, k) for k in cfg.to_dict()}
    assert sorted(got) == sorted(QUICKSTART), "TrainConfig fields changed: update the pin"
    for name, want in QUICKSTART.items():
        assert got[name] == want, f"{name}: {got[name]!r} != {want!r}"
    # Saved and read back, it is the same run.
    assert TrainConfig.from_dict(json.loads(cfg.to_json())) == cfg


def test_every_preset_names_a_recipe_of_its_task():
    for name in presets.list_presets():
        recipe = recipes.get_recipe(presets.preset_recipe(name))
        is_imhn = type(presets.get_preset(name)).__name__ == "IMHNConfig"
        assert recipe.task == ("bottom_up" if is_imhn else "top_down"), name


def test_recipes_by_name():
    paper = TrainConfig(preset="imhn_4s_512").resolved()
    assert paper.recipe == "simple_pose"
    assert (paper.optimizer, paper.lr, paper.weight_decay, paper.lr_decay_every,
            paper.warmup_epochs, paper.loss, paper.time_budget_s) == \
        ("sgd", 2.5e-5, 5e-4, 15, 3.0, "focal_l2", 0.0)
    # The recipe, not the preset's name, decides: the tiny model with the paper's recipe.
    tiny_paper = TrainConfig(preset="imhn_tiny", recipe="simple_pose").resolved()
    assert (tiny_paper.optimizer, tiny_paper.loss, tiny_paper.codec) == ("sgd", "focal_l2", None)
    fp = TrainConfig(task="top_down", preset="fasterpose_tiny", epochs=14).resolved()
    assert (fp.recipe, fp.loss, fp.lr_boundaries) == ("fasterpose", "rce", (9, 12))
    sb = TrainConfig(task="top_down", preset="simple_baseline_tiny", epochs=140).resolved()
    assert (sb.recipe, sb.loss, sb.lr_boundaries) == ("simple_baseline", "mse", (90, 120))
    # Explicit fields always win over the recipe.
    mine = TrainConfig(lr=0.5, epochs=4, loss="focal_l2").resolved()
    assert (mine.lr, mine.epochs, mine.loss, mine.lr_boundaries) == (0.5, 4, "focal_l2", (3,))


def test_recipe_errors_name_the_problem():
    with pytest.raises(ValueError, match="unknown recipe 'nope'; choose one of"):
        TrainConfig(recipe="nope").validate()
    with pytest.raises(ValueError, match="recipe 'fasterpose' trains the top_down task"):
        TrainConfig(recipe="fasterpose").validate()
    with pytest.raises(ValueError, match="pass --task top_down or --recipe"):
        TrainConfig(preset="fasterpose_tiny").resolved()


def test_configs_saved_with_the_retired_test_hook_still_load():
    d = TrainConfig().to_dict()
    d["debug_nan_at_step"] = -1
    assert TrainConfig.from_dict(d) == TrainConfig()
    assert "debug_nan_at_step" not in TrainConfig().to_dict()
