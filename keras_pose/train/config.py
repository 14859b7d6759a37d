"""TrainConfig: every knob of a training run, typed, saved beside the checkpoints.

The absl flags of ``training/train.py`` map one-to-one onto these fields; a JSON
``--config_file`` and ``--override key=value`` pairs are applied on top. The
resolved config is written to ``<model_dir>/config.json`` so a run can be
reproduced and resumed. Imports without TensorFlow.
"""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Optional, Tuple

from keras_pose.config import Config

TASKS = ("bottom_up", "top_down")
# The README quickstart (tiny bottom-up preset on the synthetic set): 28 x 100
# steps of 8 images. Measured on idle 2-core machines: 425-550 s of training
# (the ~40 s first-step trace included), 8-10 min for the whole command; val AP
# 0.53-0.54 (the README has the measurements and how each choice below moved it).
# The time budget is the safety net on a slower machine, so training never
# passes 10 minutes (the LR drop at 75% then may not be reached). AP is
# step-limited there (benchmarks/quickstart_curve.py), so every step the budget
# allows is used. The paper's test-time augmentation (flip + scales 1 and 1.5,
# docs/method_bottom_up.md §5.2) costs a few seconds on the 100 val images and adds
# ~0.05 AP.
QUICKSTART_RUN = dict(epochs=28, steps_per_epoch=100, batch_size=8, time_budget_s=570.0,
                      eval_flip=True, eval_scales=(1.0, 1.5))
LOSSES = ("l2", "focal_l2", "focal_l2_paper", "rce", "mse")
STRATEGIES = ("auto", "mirrored", "multi_worker", "one_device")
PRECISIONS = ("auto", "off", "float16", "bfloat16")
OPTIMIZERS = ("sgd", "adam")


@dataclasses.dataclass
class TrainConfig(Config):
    """A training run. ``None`` fields take the task's recipe default (``resolved()``)."""

    task: str = "bottom_up"
    preset: str = "imhn_tiny"
    # --- data
    dataset: str = "synthetic"                  # synthetic | coco
    data_dir: str = "runs/synthetic"            # where the synthetic set is (or is generated)
    synthetic_train_images: int = 1200
    synthetic_val_images: int = 100
    synthetic_seed: int = 0
    synthetic_preset: str = "quickstart"        # keras_pose.data.synthetic.PRESETS
    coco_dir: Optional[str] = None              # standard layout: annotations/, train2017/, val2017/
    images_dir: Optional[str] = None            # explicit pair instead of coco_dir
    annotations: Optional[str] = None
    val_images_dir: Optional[str] = None
    val_annotations: Optional[str] = None
    # --- run
    model_dir: str = "runs/quickstart"
    # None: the recipe's (resolved()); the quickstart's is QUICKSTART_RUN below.
    epochs: Optional[int] = None                # 30 (quickstart: 28)
    steps_per_epoch: Optional[int] = None       # one pass over the samples (quickstart: 100)
    batch_size: Optional[int] = None            # GLOBAL, split over replicas: 16 (quickstart: 8)
    time_budget_s: Optional[float] = None       # > 0: stop training after this many seconds
    seed: int = 0
    deterministic: bool = False                 # op determinism + ordered input (tests, resume checks)
    # --- optimisation (None = recipe default)
    optimizer: Optional[str] = None
    lr: Optional[float] = None                  # base LR per replica (scaled by replicas)
    momentum: float = 0.9
    weight_decay: Optional[float] = None
    warmup_epochs: Optional[float] = None
    lr_decay_every: Optional[int] = None        # step decay period (epochs) for SGD
    lr_decay_factor: Optional[float] = None
    lr_boundaries: Optional[Tuple[int, ...]] = None  # epochs of x0.1 drops for Adam
    loss: Optional[str] = None
    init_from: Optional[str] = None             # weights to start from (.keras or .weights.h5)
    codec: Optional[dict] = None                # codec config fields to change (e.g. {"sigma": 4.5})
    augment: Optional[dict] = None              # AugmentConfig fields to change (bottom-up)
    # --- hardware
    strategy: str = "auto"
    cpu_replicas: int = 0                       # > 1: split the CPU into logical devices (tests)
    sync_batchnorm: bool = True                 # synchronise BN statistics across replicas (SyncBN)
    mixed_precision: str = "auto"
    # --- evaluation and products
    eval_every: int = 0                         # epochs between AP evaluations (0: only at the end)
    eval_max_images: Optional[int] = None
    eval_flip: Optional[bool] = None            # flip test in evaluation (quickstart: on)
    eval_scales: Optional[Tuple[float, ...]] = None  # bottom-up test scales (quickstart: 1, 1.5)
    export_int8: bool = True                    # write model_int8.tflite at the end (quickstart)
    demo_image: bool = True                     # write an annotated picture at the end
    debug_nan_at_step: int = -1                 # tests: poison the batch of this global step

    # ------------------------------------------------------------------
    def validate(self) -> None:
        def one_of(name, options):
            v = getattr(self, name)
            if v is not None and v not in options:
                raise ValueError(f"{name}={v!r} is not one of {', '.join(options)}")
        one_of("task", TASKS)
        one_of("loss", LOSSES)
        one_of("strategy", STRATEGIES)
        one_of("mixed_precision", PRECISIONS)
        one_of("optimizer", OPTIMIZERS)
        one_of("dataset", ("synthetic", "coco"))
        for name in ("epochs", "batch_size"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.eval_scales is not None and (not self.eval_scales or min(self.eval_scales) <= 0):
            raise ValueError(f"eval_scales must be positive numbers, got {self.eval_scales}")
        if self.steps_per_epoch is not None and self.steps_per_epoch < 1:
            raise ValueError(f"steps_per_epoch must be >= 1, got {self.steps_per_epoch}")
        if self.dataset == "coco" and not (self.coco_dir or (self.images_dir and self.annotations)):
            raise ValueError("dataset=coco needs --coco_dir, or --images_dir with --annotations")
        if self.loss in ("rce", "mse") and self.task == "bottom_up":
            raise ValueError(f"loss {self.loss!r} is for the top-down task; use l2 or focal_l2")
        if self.loss in ("l2", "focal_l2", "focal_l2_paper") and self.task == "top_down":
            raise ValueError(f"loss {self.loss!r} is for the bottom-up task; use rce or mse")

    def resolved(self) -> "TrainConfig":
        """Fill ``None`` fields with the recipe of the task.

        Bottom-up (``docs/method_bottom_up.md`` §6): SGD momentum 0.9, weight decay 5e-4,
        LR x0.2 every 15 epochs, 3-epoch linear warm-up, focal L2. Tiny presets
        train from scratch on a CPU in minutes, where Adam converges far faster,
        so they default to Adam 1e-3 and plain L2 (documented in the README).
        Top-down (SimpleBaseline/FasterPose): Adam 1e-3, x0.1 at 90 and 120 of 140.
        """
        tiny = "tiny" in self.preset or "test" in self.preset
        quick = tiny and self.task == "bottom_up" and self.dataset == "synthetic"
        run = dict(QUICKSTART_RUN) if quick else \
            dict(epochs=30, steps_per_epoch=None, batch_size=16, time_budget_s=0.0, eval_flip=False,
                 eval_scales=(1.0,))
        self = self.replace(**{k: v for k, v in run.items() if getattr(self, k) is None})
        if self.task == "bottom_up":
            defaults = dict(optimizer="adam" if tiny else "sgd",
                            lr=1e-3 if tiny else 2.5e-5,
                            weight_decay=0.0 if tiny else 5e-4,
                            warmup_epochs=1.0 if tiny else 3.0,
                            lr_decay_every=None if tiny else 15,
                            lr_decay_factor=0.2,
                            lr_boundaries=(int(self.epochs * 0.75),) if tiny else None,
                            # Tiny runs are the paper's first stage only (L2, §6): focal L2
                            # from scratch read 0.03 AP lower at 1400 and at 2800 steps.
                            loss="l2" if tiny else "focal_l2")
        else:
            defaults = dict(optimizer="adam", lr=1e-3, weight_decay=0.0, warmup_epochs=0.0,
                            lr_decay_every=None, lr_decay_factor=0.1,
                            lr_boundaries=(90, 120) if self.epochs >= 140 else
                            (int(self.epochs * 90 / 140), int(self.epochs * 120 / 140)),
                            loss="rce" if "fasterpose" in self.preset else "mse")
        if self.task == "bottom_up" and tiny:
            # The paper's Gaussians (sigma 9 / 7 px) are sized for 384-512 px
            # inputs; at the tiny presets' 64-128 px they swallow small persons
            # (GT-map oracle, benchmarks/synthetic_oracle.py: 0.84 at sigma 9 vs
            # 0.89 at 4.5 on the "easy" preset; 0.85 at 4.5 and 3.5 on
            # "quickstart"). The tiny model's val AP rose with sharper maps:
            # 0.335-0.343 at 4.5 / 3.5, 0.355 and 0.368 at 3.5 / 2.75 (README).
            # A blurry tiny model puts stray wrist/ankle peaks on the elbow/knee,
            # and such a 1-3 px "limb" wins the greedy match on its few strong
            # samples; pairs closer than one map cell (the stride) cannot be two
            # joints the maps resolve, so they are not limbs (+0.013 and +0.016
            # val AP on two quickstart models; 0 keeps the authors' grouping).
            defaults["codec"] = {"sigma": 3.5, "limb_sigma": 2.75, "min_limb_length": 4.0}
            # The authors' shift (50 px) is for 512 px inputs: at 128 px it pushes
            # the main person half out of the picture. Their scale rule sets the
            # main person's box to 0.6 H; a scale drawn from 0.6-1.45 then spans
            # 0.36-0.87 H, the 5-95 % range of the synthetic val boxes (0.55 x
            # 0.6-1.4 reached 0.77 H only, and the tallest quarter of the val
            # persons scored worst). The scenes are mostly upright, so rotations
            # stay within 15 degrees. Both: val AP 0.483 -> 0.541 (README).
            defaults["augment"] = {"max_shift": 16.0,
                                   "max_rotation": 15.0, "target_dist": 0.6,
                                   "scale_min": 0.6, "scale_max": 1.45}
        changes = {k: v for k, v in defaults.items() if getattr(self, k) is None}
        return self.replace(**changes)

    # ------------------------------------------------------------------
    def save(self, path: str) -> None:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            f.write(self.to_json())

    @classmethod
    def load(cls, path: str) -> "TrainConfig":
        try:
            with open(path, encoding="utf-8") as f:
                return cls.from_dict(json.load(f))
        except (OSError, json.JSONDecodeError) as e:
            raise ValueError(f"{path}: cannot read a training config ({e})") from None


def apply_overrides(config: TrainConfig, overrides) -> TrainConfig:
    """Apply ``key=value`` strings (values parsed as JSON when possible)."""
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    changes = {}
    for item in overrides or ():
        if "=" not in item:
            raise ValueError(f"override {item!r} is not of the form key=value")
        key, text = item.split("=", 1)
        key = key.strip()
        if key not in fields:
            raise ValueError(f"override {key!r} is not a TrainConfig field")
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            value = text
        if isinstance(value, list):
            value = tuple(value)
        changes[key] = value
    return config.replace(**changes)
