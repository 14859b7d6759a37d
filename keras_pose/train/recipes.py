"""Named training recipes: the defaults a run takes for the fields it leaves unset.

A recipe is chosen by name, like the experiment factories of TF Model Garden: a
``TrainConfig`` names one (``recipe=``), or takes the one its model preset names
(``keras_pose.models.presets.preset_recipe``). Nothing is guessed from a preset's name.
``TrainConfig.resolved()`` asks the recipe for its defaults and fills only the fields the
user left ``None``, so flags, config files and ``--override`` always win.

Recipes (``list_recipes()``):

* ``quickstart`` - the tiny bottom-up model on the synthetic set, on a CPU, in under
  10 minutes: Adam, plain L2, Gaussians and augmentation sized for 128 px inputs, the
  paper's flip + two-scale test. Measured in ``docs/benchmarks.md``.
* ``simple_pose`` - the paper models (Li et al., AAAI 2020; ``docs/method_bottom_up.md``
  §6.1): SGD momentum 0.9, weight decay 5e-4, 3-epoch warm-up, LR x0.2 every 15 epochs,
  focal L2, the paper's codec and augmentation.
* ``fasterpose`` / ``simple_baseline`` - top-down (``docs/method_top_down.md`` §4):
  Adam 1e-3, x0.1 at epochs 90 and 120 of 140 (scaled to shorter runs); RCE on the
  logits for FasterPose, MSE for the SimpleBaseline control.

Imports without TensorFlow.
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Dict

__all__ = ["Recipe", "get_recipe", "list_recipes"]


@dataclasses.dataclass(frozen=True)
class Recipe:
    """A named recipe: the task it trains and a function config -> field defaults.

    ``defaults(config)`` sees the config with the recipe's run-length fields already
    applied (so schedules can depend on the number of epochs) and returns a dict of
    ``TrainConfig`` field values.
    """

    name: str
    task: str
    run: Dict[str, object]
    defaults: Callable[[object], dict]
    summary: str


_RECIPES: Dict[str, Recipe] = {}

# A run length for runs that train until the schedule ends (no time budget).
_FULL_RUN = dict(epochs=30, steps_per_epoch=None, batch_size=16, time_budget_s=0.0,
                 eval_flip=False, eval_scales=(1.0,))


def _register(name: str, task: str, run: dict, summary: str):
    def wrap(fn):
        _RECIPES[name] = Recipe(name=name, task=task, run=dict(run), defaults=fn, summary=summary)
        return fn
    return wrap


def list_recipes() -> list:
    """Names of all recipes, sorted."""
    return sorted(_RECIPES)


def get_recipe(name: str) -> Recipe:
    """The recipe called ``name``; a one-line error naming the choices otherwise."""
    if name not in _RECIPES:
        raise ValueError(f"unknown recipe {name!r}; choose one of {', '.join(list_recipes())}")
    return _RECIPES[name]


# --------------------------------------------------------------------------- bottom-up
# 28 x 100 steps of 8 images, a 570 s safety budget so training never passes
# 10 minutes on a slow machine, and the paper's test-time augmentation (flip +
# scales 1 and 1.5, docs/method_bottom_up.md §5.2). AP is step-limited at this
# size, so every step the budget allows is used.
@_register("quickstart", "bottom_up",
           run=dict(epochs=28, steps_per_epoch=100, batch_size=8, time_budget_s=570.0,
                    eval_flip=True, eval_scales=(1.0, 1.5)),
           summary="tiny bottom-up model on the synthetic set, CPU, < 10 minutes")
def _quickstart(config) -> dict:
    return dict(
        # From scratch on a CPU Adam converges far faster than the paper's SGD.
        optimizer="adam", lr=1e-3, weight_decay=0.0, warmup_epochs=1.0,
        lr_decay_every=None, lr_decay_factor=0.2,
        lr_boundaries=(int(config.epochs * 0.75),),
        # The paper's first stage only (plain L2, docs/method_bottom_up.md §6.1): focal L2
        # from scratch trains slower at this budget.
        loss="l2",
        # The paper's Gaussians (sigma 9 / 7 px) are sized for 384-512 px inputs; at
        # 128 px they swallow small persons, so they are sharper here. Candidate pairs
        # closer than one map cell (the stride, 4 px) cannot be two joints the maps
        # resolve, so grouping does not treat them as limbs (0 keeps the authors' rule).
        codec={"sigma": 3.5, "limb_sigma": 2.75, "min_limb_length": 4.0},
        # The authors' 50 px shift is for 512 px inputs; at 128 px it pushes the main
        # person half out of the picture. Main person at 0.6 H x 0.6-1.45 spans the
        # person heights of the synthetic val split; its scenes are mostly upright,
        # so rotations stay within 15 degrees.
        augment={"max_shift": 16.0, "max_rotation": 15.0, "target_dist": 0.6,
                 "scale_min": 0.6, "scale_max": 1.45},
    )


@_register("simple_pose", "bottom_up", run=_FULL_RUN,
           summary="the paper's recipe: SGD, warm-up, x0.2 every 15 epochs, focal L2")
def _simple_pose(config) -> dict:
    # Li et al., AAAI 2020; docs/method_bottom_up.md §6.1 (base LR per replica).
    return dict(optimizer="sgd", lr=2.5e-5, weight_decay=5e-4, warmup_epochs=3.0,
                lr_decay_every=15, lr_decay_factor=0.2, lr_boundaries=None, loss="focal_l2")


# --------------------------------------------------------------------------- top-down
def _top_down(config, loss: str) -> dict:
    # SimpleBaseline's schedule, docs/method_top_down.md §4: x0.1 at epochs 90 and
    # 120 of 140, at the same fractions of a shorter run.
    e = config.epochs
    bounds = (90, 120) if e >= 140 else (int(e * 90 / 140), int(e * 120 / 140))
    return dict(optimizer="adam", lr=1e-3, weight_decay=0.0, warmup_epochs=0.0,
                lr_decay_every=None, lr_decay_factor=0.1, lr_boundaries=bounds, loss=loss)


@_register("fasterpose", "top_down", run=_FULL_RUN,
           summary="FasterPose: Adam 1e-3, x0.1 at 90/120 of 140, RCE on the logits")
def _fasterpose(config) -> dict:
    return _top_down(config, "rce")


@_register("simple_baseline", "top_down", run=_FULL_RUN,
           summary="the SimpleBaseline control: as fasterpose, with MSE")
def _simple_baseline(config) -> dict:
    return _top_down(config, "mse")
