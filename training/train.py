r"""Train a keras_pose model (bottom-up Simple Pose or top-down FasterPose).

With no flags this is the quickstart: generate the synthetic dataset, train the
tiny bottom-up preset on the CPU within a 10-minute budget, evaluate with
pycocotools, save the model, export int8 TFLite and draw a picture.

  python training/train.py                                   # quickstart
  python training/train.py --task bottom_up --preset imhn_4s_512 --dataset coco \
      --coco_dir /data/coco --model_dir runs/imhn --epochs 100 --batch_size 32
  python training/train.py --flagfile my.flags --override lr=1e-4 --override epochs=50
  python training/train.py --keypoints my_keypoints.json --dataset coco \
      --annotations train.json --images_dir train/ --val_annotations val.json --val_images_dir val/
  python training/train.py --teacher runs/paper --dataset images --images_dir my_photos \
      --preset imhn_mobile --model_dir runs/student       # distillation (docs/distillation.md)

Precedence: TrainConfig defaults < --config_file (JSON) < flags given on the
command line < --override key=value. The resolved config is saved to
<model_dir>/config.json. Re-running with the same --model_dir resumes: its
config.json replaces the defaults; flags that would change the model it holds
(preset, task, codec) are refused before anything is written, other changes
(epochs, lr, ...) are applied and printed.
"""
import dataclasses
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402

from keras_pose.train.config import (BAD_ANNOTATIONS, DATASETS, LOSSES,  # noqa: E402
                                     PRECISIONS, STRATEGIES, TASKS, TrainConfig,
                                     apply_overrides, resume_check)

F = flags.FLAGS
flags.DEFINE_enum("task", None, list(TASKS), "bottom_up (Simple Pose) or top_down (FasterPose).")
flags.DEFINE_string("preset", None, "Model preset (keras_pose.list_presets()).")
flags.DEFINE_string("recipe", None, "Training recipe (keras_pose.train.recipes.list_recipes()); "
                    "default: the one the preset names.")
flags.DEFINE_string("keypoints", None, "Keypoint spec: coco (default), crowdpose, mpii, ap10k, "
                    "or a spec file (docs/keypoints.md); saved in the run.")
flags.DEFINE_enum("dataset", None, list(DATASETS),
                  "Training data; images: a folder of unlabeled images (--images_dir) "
                  "whose targets are the --teacher's maps.")
flags.DEFINE_string("data_dir", None, "Folder of the synthetic dataset (generated if missing).")
flags.DEFINE_string("coco_dir", None, "COCO root with annotations/, train2017/, val2017/.")
flags.DEFINE_string("images_dir", None, "Training images (with --annotations, or unlabeled "
                    "with --dataset images).")
flags.DEFINE_string("annotations", None, "Training person_keypoints JSON.")
flags.DEFINE_string("val_images_dir", None, "Validation images.")
flags.DEFINE_string("val_annotations", None, "Validation person_keypoints JSON.")
flags.DEFINE_enum("bad_annotations", None, list(BAD_ANNOTATIONS),
                  "A bad image entry or annotation: skip it (counted and named; default) "
                  "or refuse the file (strict).")
flags.DEFINE_string("model_dir", None, "Output folder; an existing one is resumed (flags that "
                    "change its model - preset, task, codec - are refused).")
flags.DEFINE_string("teacher", None, "Bottom-up model folder (a run or a converted checkpoint) "
                    "whose maps train the student (docs/distillation.md).")
flags.DEFINE_string("teacher_cache", None, "Folder for the teacher's maps, computed once before "
                    "training (CPU); without it the teacher runs inside each training step.")
flags.DEFINE_list("teacher_scales", None, "Test scales of the teacher's maps (default: 1; "
                  "docs/distillation.md).")
flags.DEFINE_boolean("teacher_flip", None, "Flip fusion of the teacher's maps (default on).")
flags.DEFINE_float("teacher_weight", None, "Loss weight of the pixels the teacher supervises.")
flags.DEFINE_string("unlabeled_dir", None, "Unlabeled images mixed into a labeled --dataset.")
flags.DEFINE_enum("unlabeled_framing", None, ["image", "teacher"], "Frame an unlabeled image whole "
                  "(image) or about a person the teacher's cached maps show (teacher).")
flags.DEFINE_integer("epochs", None, "Epochs.")
flags.DEFINE_integer("steps_per_epoch", None, "Steps per epoch (default: one pass).")
flags.DEFINE_integer("batch_size", None, "Global batch size (split over replicas).")
flags.DEFINE_float("lr", None, "Base learning rate per replica.")
flags.DEFINE_enum("loss", None, list(LOSSES), "Loss.")
flags.DEFINE_string("init_from", None, "Weights to start from (.keras, .weights.h5 or a model_dir).")
flags.DEFINE_enum("mixed_precision", None, list(PRECISIONS), "Compute precision.")
flags.DEFINE_boolean("jit_compile", None, "XLA-compile the train step (see docs/gpu.md).")
flags.DEFINE_enum("strategy", None, list(STRATEGIES), "Distribution strategy.")
flags.DEFINE_integer("cpu_replicas", None, "Split the CPU into N logical devices (testing).")
flags.DEFINE_float("time_budget_s", None, "Stop training after this many seconds (0: no limit).")
flags.DEFINE_integer("eval_every", None, "Epochs between AP evaluations (0: only at the end).")
flags.DEFINE_integer("eval_max_images", None, "Evaluate on at most this many images.")
flags.DEFINE_integer("seed", None, "Random seed.")
flags.DEFINE_boolean("deterministic", None, "Deterministic ops and input order.")
flags.DEFINE_boolean("export_int8", None, "Export int8 TFLite at the end.")
flags.DEFINE_boolean("demo_image", None, "Write an annotated picture at the end.")
flags.DEFINE_string("config_file", None, "JSON TrainConfig applied before the flags.")
flags.DEFINE_multi_string("override", [], "key=value applied last (JSON values).")


def build_config() -> TrainConfig:
    """Defaults < --config_file < flags < --override; an existing run's config.json
    replaces the defaults, and what is asked must not contradict it (resume_check)."""
    given = {}
    if F.config_file:  # only the keys the file sets
        loaded = TrainConfig.load(F.config_file).to_dict()  # a bad file: one-line error
        with open(F.config_file, encoding="utf-8") as f:
            keys = set(json.load(f))
        given = {k: v for k, v in loaded.items() if k in keys}
    given.update({f.name: F[f.name].value for f in dataclasses.fields(TrainConfig)
                  if f.name in F and F[f.name].present})
    if given.get("teacher_scales") is not None:
        try:
            given["teacher_scales"] = tuple(float(v) for v in given["teacher_scales"])
        except ValueError:
            raise ValueError(f"--teacher_scales {','.join(F.teacher_scales)}: not numbers") from None
    given.update(_override_fields(F.override))
    config = TrainConfig().replace(**given)
    saved = os.path.join(config.model_dir, "config.json")
    if os.path.isfile(saved):
        base = TrainConfig.load(saved)
        changes = resume_check(base, given, saved)
        config = base.replace(**{k: v for k, v in given.items() if k in changes})
    return config


def _override_fields(overrides) -> dict:
    """The fields ``--override key=value`` sets (parsed like apply_overrides)."""
    changed = apply_overrides(TrainConfig(), overrides)
    keys = {item.split("=", 1)[0].strip() for item in overrides or ()}
    return {k: getattr(changed, k) for k in keys}


def main(argv):
    if len(argv) > 1:
        sys.exit(f"train: unexpected arguments {' '.join(argv[1:])} (flags are --name=value)")
    try:
        config = build_config()  # no TensorFlow yet: bad flags fail in a second
        from keras_pose.train.config import keypoint_spec
        keypoint_spec(config)   # --keypoints: a bad name or spec file fails here, in one line
        if config.init_from and not os.path.exists(config.init_from):
            raise ValueError(f"--init_from {config.init_from}: not found")
        if config.dataset == "coco" or config.annotations:
            from keras_pose.train.loop import _check_paths, prepare_data
            _check_paths(prepare_data(config, (0, 0)))
        from keras_pose.train import loop as train_lib
        train_lib.main(config)
    except (ValueError, FileNotFoundError) as e:
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    app.run(main)
