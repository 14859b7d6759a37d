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
from typing import Optional, Tuple, Union

from keras_pose.checks import check_preset
from keras_pose.config import Config
from keras_pose.descriptor import RunDescriptor, describe
from keras_pose.train import recipes
from keras_pose.io import atomic_write_text

TASKS = ("bottom_up", "top_down")
LOSSES = ("l2", "focal_l2", "focal_l2_paper", "rce", "mse")
STRATEGIES = ("auto", "mirrored", "multi_worker", "one_device")
PRECISIONS = ("auto", "off", "float16", "bfloat16")
OPTIMIZERS = ("sgd", "adam")
DATASETS = ("synthetic", "coco", "images")
# Fields older config.json files may hold that no longer exist.
_RETIRED_FIELDS = ("debug_nan_at_step",)
BAD_ANNOTATIONS = ("skip", "strict")  # keras_pose.data.coco.validate_coco
# A run folder holds one model: these fields decide which (input size and
# keypoints follow from the preset, its "model" overrides and the codec).
# Resuming may change the others.
RUN_IDENTITY = ("task", "preset", "model", "codec")


@dataclasses.dataclass
class TrainConfig(Config):
    """A training run. ``None`` fields take the recipe's defaults (``resolved()``)."""

    task: str = "bottom_up"
    preset: str = "imhn_tiny"
    recipe: Optional[str] = None                # keras_pose.train.recipes; None: the preset's
    model: Optional[dict] = None                # preset fields to change (e.g. {"width": 16})
    # --- data
    # Keypoint spec: a built-in name (coco, crowdpose, mpii, ap10k) or a spec file
    # (docs/keypoints.md); the run saves the spec itself, so config.json needs no file.
    keypoints: Optional[Union[str, dict]] = None
    dataset: str = "synthetic"                  # synthetic | coco | images (unlabeled, --teacher)
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
    bad_annotations: str = "skip"               # skip (count, name, drop) | strict (refuse)
    # --- teacher-student training (docs/distillation.md)
    teacher: Optional[str] = None               # bottom-up model folder whose maps are targets
    teacher_cache: Optional[str] = None         # folder of the teacher's maps, computed once
    teacher_scales: Optional[Tuple[float, ...]] = None  # default: (1.0,)
    teacher_flip: bool = True                   # flip fusion of the teacher's maps
    teacher_weight: float = 1.0                 # loss weight of teacher-supervised pixels
    unlabeled_dir: Optional[str] = None         # unlabeled images mixed into a labeled dataset
    unlabeled_framing: str = "image"            # image | teacher (about a person its cache shows)
    # --- run
    model_dir: str = "runs/quickstart"
    # None: the recipe's (resolved()).
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
    # XLA-compile the train step. Off by default: on the CPU it only adds compile
    # time; on a GPU benchmarks/train_throughput.py measures whether it pays (docs/gpu.md).
    jit_compile: bool = False
    # --- evaluation and products
    eval_every: int = 0                         # epochs between AP evaluations (0: only at the end)
    eval_max_images: Optional[int] = None
    eval_flip: Optional[bool] = None            # flip test in evaluation (quickstart: on)
    eval_scales: Optional[Tuple[float, ...]] = None  # bottom-up test scales (quickstart: 1, 1.5)
    export_int8: bool = True                    # write model_int8.tflite at the end (quickstart)
    demo_image: bool = True                     # write an annotated picture at the end

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
        one_of("dataset", DATASETS)
        if self.dataset == "images" and not (self.teacher and self.images_dir):
            raise ValueError("dataset=images (unlabeled) needs --teacher and --images_dir")
        if (self.teacher_cache or self.unlabeled_dir) and not self.teacher:
            raise ValueError("--teacher_cache and --unlabeled_dir need --teacher")
        if self.teacher and self.task != "bottom_up":
            raise ValueError("--teacher trains bottom-up students only (task bottom_up)")
        one_of("unlabeled_framing", ("image", "teacher"))
        if self.unlabeled_framing == "teacher" and not self.teacher_cache:
            raise ValueError("--unlabeled_framing=teacher needs --teacher_cache")
        if self.teacher_weight < 0:
            raise ValueError(f"teacher_weight must be >= 0, got {self.teacher_weight}")
        if self.teacher_scales is not None and (not self.teacher_scales or
                                                min(self.teacher_scales) <= 0):
            raise ValueError(f"teacher_scales must be positive numbers, got {self.teacher_scales}")
        if self.recipe is not None:
            recipe = recipes.get_recipe(self.recipe)
            if recipe.task != self.task:
                raise ValueError(f"recipe {self.recipe!r} trains the {recipe.task} task, "
                                 f"but task={self.task!r}")
        one_of("bad_annotations", BAD_ANNOTATIONS)
        if not str(self.model_dir).strip():
            raise ValueError("model_dir is empty: give --model_dir a folder for the run")
        check_preset(self.preset, "preset")
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
        """Fill ``None`` fields from the named recipe (``keras_pose.train.recipes``).

        The recipe is ``self.recipe``, else the one the preset names
        (``keras_pose.models.presets.preset_recipe``). Run-length fields are filled
        first, then the recipe's optimiser, loss, codec and augmentation defaults,
        which may depend on them (LR boundaries on the number of epochs).
        """
        name = self.recipe
        if name is None:
            # Lazy: the models package imports Keras, and this module must not.
            from keras_pose.models.presets import preset_recipe
            name = preset_recipe(self.preset)
        recipe = recipes.get_recipe(name)
        if recipe.task != self.task:
            raise ValueError(f"preset {self.preset!r} trains with the {name!r} recipe of the "
                             f"{recipe.task} task, but task={self.task!r}; pass --task "
                             f"{recipe.task} or --recipe")
        self = self.replace(recipe=name)
        self = self.replace(**{k: v for k, v in recipe.run.items() if getattr(self, k) is None})
        defaults = recipe.defaults(self)
        if self.teacher and self.codec is None:
            # The student learns the teacher's maps, so it decodes them with the
            # teacher's codec (its Gaussian widths, thresholds and grouping).
            defaults["codec"] = _teacher_codec(self.teacher) or defaults.get("codec")
        return self.replace(**{k: v for k, v in defaults.items() if getattr(self, k) is None})


    # ------------------------------------------------------------------
    def save(self, path: str, descriptor: RunDescriptor | None = None) -> None:
        """Write ``config.json``; the run's descriptor goes under ``"descriptor"``."""
        d = self.to_dict()
        if descriptor is not None:
            d["descriptor"] = descriptor.to_dict()
        # atomically (keras_pose/io.py): a kill leaves the old file or the new one
        atomic_write_text(path, json.dumps(d, indent=2, sort_keys=True))

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        """From a ``config.json`` dict (its ``"descriptor"`` entry is not a field).

        Runs saved before the test-only NaN hook left the user's config still load.
        """
        return super().from_dict({k: v for k, v in d.items()
                                  if k != "descriptor" and k not in _RETIRED_FIELDS})

    @classmethod
    def load(cls, path: str) -> "TrainConfig":
        try:
            with open(path, encoding="utf-8") as f:
                return cls.from_dict(json.load(f))
        except (OSError, json.JSONDecodeError) as e:
            raise ValueError(f"{path}: cannot read a training config ({e})") from None


def read_descriptor(config, source: str = "config.json") -> RunDescriptor:
    """The RunDescriptor of a run from its ``config.json`` (a path or the loaded dict).

    Runs written before descriptors existed have none: it is derived here, and
    only here, from their saved TrainConfig (the preset names the model, the
    saved codec config the codec).
    """
    if not isinstance(config, dict):
        source = str(config)
        try:
            with open(config, encoding="utf-8") as f:
                config = json.load(f)
        except (OSError, json.JSONDecodeError) as e:
            raise ValueError(f"{source}: cannot read a run config ({e})") from None
    if "descriptor" in config:
        return RunDescriptor.from_dict(config["descriptor"], source)
    from keras_pose.models.presets import for_spec, get_preset  # imports Keras (model registry)

    cfg = TrainConfig.from_dict(config).resolved()
    spec = keypoint_spec(cfg)
    model_cfg = for_spec(get_preset(cfg.preset), spec)
    if model_cfg.task != cfg.task:
        raise ValueError(f"{source}: task {cfg.task!r} does not fit preset {cfg.preset!r} "
                         f"({model_cfg.task})")
    return describe(model_cfg, cfg.codec, spec=spec, preset=cfg.preset)


def keypoint_spec(config):
    """The KeypointSpec of a run (a TrainConfig or its config.json dict).

    The ``keypoints`` field (a name, a file, or the spec dict a run saves), else
    the run descriptor's, else the spec inside a saved codec config (runs made
    before either), else COCO.
    """
    from keras_pose.skeleton import load_spec

    get = config.get if isinstance(config, dict) else (lambda k: getattr(config, k, None))
    if get("keypoints") is not None:
        return load_spec(get("keypoints"))
    desc, codec = get("descriptor"), get("codec")
    if isinstance(desc, dict) and isinstance(desc.get("keypoints"), dict):
        return load_spec(desc["keypoints"])
    if isinstance(codec, dict) and isinstance(codec.get("spec"), dict):
        return load_spec(codec["spec"])
    return load_spec(None)


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


# ---------------------------------------------------------------- resuming
def _plain(v):
    """JSON form (tuples -> lists) so saved and given values compare equal."""
    return json.loads(json.dumps(v))


def _codec_conflicts(saved, given) -> list:
    """``codec`` keys where ``given`` (a full get_config() or fields to change) differs."""
    if given is None:
        return []
    saved, given = _plain(saved or {}), _plain(given)
    if "config" in given:  # a full codec config: compare every field and the spec
        fields = {**given.get("config", {}), **({"spec": given["spec"]} if "spec" in given else {})}
    else:
        fields = given
    have = {**saved.get("config", {}), "spec": saved.get("spec")} if "config" in saved else saved
    return [(f"codec.{k}", have.get(k), v) for k, v in sorted(fields.items())
            if not _same(k, have.get(k), v)]


def _same(key, a, b) -> bool:
    """Equal values; keypoint specs compare as specs (older runs saved another dict form)."""
    if a == b:
        return True
    if key == "spec" and isinstance(a, dict) and isinstance(b, dict):
        from keras_pose.skeleton import load_spec
        try:
            return load_spec(a) == load_spec(b)
        except ValueError:
            return False
    return False


def resume_check(saved: TrainConfig, given: dict, where: str) -> dict:
    """Compare the fields a resumed run asks for with the saved run's config.

    Args:
        saved: the run folder's ``config.json``.
        given: the fields asked for now (flags given, or a whole config's ``to_dict()``).
        where: the config.json path, for the message.
    Returns:
        {field: (saved value, new value)} of the compatible changes (epochs, lr, ...).
    Raises:
        ValueError (one line) naming every conflicting ``RUN_IDENTITY`` key and how to
        start a new run instead; nothing has been written when it is raised.
    """
    old = saved.to_dict()
    conflicts = [(k, old[k], given[k]) for k in ("task", "preset", "model")
                 if k in given and _plain(given[k]) != _plain(old[k])]
    conflicts += _codec_conflicts(old.get("codec"), given.get("codec"))
    if conflicts:
        what = "; ".join(f"{k}: saved {a!r}, asked {b!r}" for k, a, b in conflicts)
        raise ValueError(f"{where}: this run folder holds another model ({what}); resume without "
                         "those flags, or start a new run with another --model_dir")
    # the keypoint spec is part of the codec (compared above), whatever the field holds
    return {k: (old[k], v) for k, v in given.items()
            if k not in RUN_IDENTITY and k not in ("model_dir", "keypoints") and k in old
            and _plain(v) != _plain(old[k])}


def _teacher_codec(path) -> Optional[dict]:
    """The codec saved in a teacher folder's config.json, or None."""
    cfg = os.path.join(path, "config.json") if os.path.isdir(path) else None
    if not cfg or not os.path.isfile(cfg):
        return None
    try:
        with open(cfg, encoding="utf-8") as f:
            return json.load(f).get("codec")
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"{cfg}: cannot read the teacher's config ({e})") from None
