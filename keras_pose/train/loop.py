"""The training run behind ``training/train.py`` (both tasks).

run(config):
  1. strategy and precision (first: logical CPU devices must precede any TF op);
  2. data: the synthetic set (generated once into ``data_dir``) or COCO on disk;
  3. model, optimizer (recipe of ``TrainConfig.resolved``), losses, compiled in
     the strategy scope; ``--init_from`` weights for the L2 -> focal recipe;
  4. ``fit`` with an atomic per-epoch backup (resume after a kill with optimizer state,
     epoch and schedule intact), per-epoch checkpoints, NaN guard, time budget,
     LR logging, periodic AP and TensorBoard;
  5. products: ``model.keras``, ``config.json``, ``metrics.json``, the AP table,
     and for the quickstart an int8 TFLite export and an annotated picture.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import time

from keras_pose.io import atomic_path, atomic_write_json
from keras_pose.train.config import TrainConfig, read_descriptor, resume_check

log = logging.getLogger("keras_pose.train")


@dataclasses.dataclass
class DataPaths:
    train_annotations: str
    train_images: str
    val_annotations: str | None
    val_images: str | None


def prepare_data(config: TrainConfig, image_size, spec=None) -> DataPaths:
    """Resolve (and for the synthetic set, generate once) the train/val files.

    The synthetic set is labelled with ``spec``'s keypoints where they map onto
    the drawn figures (``synthetic.check_spec``; COCO, CrowdPose, MPII).
    """
    if config.dataset == "synthetic":
        from keras_pose.data import synthetic
        from keras_pose.skeleton import COCO
        spec = spec or COCO
        synthetic.check_spec(spec)
        root = config.data_dir
        train_ann = os.path.join(root, "annotations", "person_keypoints_train.json")
        val_ann = os.path.join(root, "annotations", "person_keypoints_val.json")
        stamp = os.path.join(root, "generated.json")
        want = {"num_train": config.synthetic_train_images, "num_val": config.synthetic_val_images,
                "seed": config.synthetic_seed, "image_size": list(image_size),
                "preset": config.synthetic_preset,
                # the preset's knobs too: a preset edited between runs regenerates the set
                "knobs": synthetic.get_preset(config.synthetic_preset).to_dict()}
        if spec != COCO:   # the stamps of COCO sets made before specs stay valid
            want["keypoints"] = spec.to_dict()
        have = None
        if os.path.isfile(stamp):
            with open(stamp, encoding="utf-8") as f:
                have = json.load(f)
        if have != want or not (os.path.isfile(train_ann) and os.path.isfile(val_ann)):
            print(f"Generating the synthetic dataset in {root} "
                  f"({want['num_train']} train + {want['num_val']} val images) ...", flush=True)
            synthetic.generate_dataset(root, num_train=want["num_train"], num_val=want["num_val"],
                                       seed=want["seed"], image_size=tuple(image_size),
                                       config=config.synthetic_preset, spec=spec)
            atomic_write_json(stamp, want)
        return DataPaths(train_ann, os.path.join(root, "train"), val_ann, os.path.join(root, "val"))
    if config.dataset == "images":   # unlabeled: the teacher's maps are the targets
        return DataPaths(None, config.images_dir, config.val_annotations, config.val_images_dir)
    if config.coco_dir:
        d = config.coco_dir
        return DataPaths(os.path.join(d, "annotations", "person_keypoints_train2017.json"),
                         os.path.join(d, "train2017"),
                         os.path.join(d, "annotations", "person_keypoints_val2017.json"),
                         os.path.join(d, "val2017"))
    return DataPaths(config.annotations, config.images_dir,
                     config.val_annotations, config.val_images_dir)


def _check_paths(paths: DataPaths, unlabeled: bool = False) -> None:
    for p in (paths.train_images,) if unlabeled else (paths.train_annotations, paths.train_images):
        if not p or not os.path.exists(p):
            raise FileNotFoundError(f"{p}: not found (check --coco_dir / --images_dir / --annotations)")


def check_resume(config: TrainConfig) -> None:
    """Refuse to resume a run folder whose config.json describes another model.

    ``config`` is the run's full config (codec resolved); compatible changes
    (epochs, lr, ...) are printed. Raises ValueError before anything is written.
    """
    path = os.path.join(config.model_dir, "config.json")
    if not os.path.isfile(path):
        return
    changes = resume_check(TrainConfig.load(path), config.to_dict(), path)
    if changes:
        print(f"Resuming {config.model_dir} with changed settings: " + ", ".join(
            f"{k} {a!r} -> {b!r}" for k, (a, b) in sorted(changes.items())), flush=True)


def make_optimizer(config: TrainConfig, steps_per_epoch: int, replicas: int):
    import keras

    from keras_pose.train.schedules import WarmupStepSchedule

    schedule = WarmupStepSchedule(
        base_lr=config.lr * replicas, steps_per_epoch=steps_per_epoch,
        warmup_epochs=config.warmup_epochs or 0.0, decay_every=config.lr_decay_every,
        factor=config.lr_decay_factor, boundaries=config.lr_boundaries or ())
    wd = config.weight_decay or None
    if config.optimizer == "sgd":
        return keras.optimizers.SGD(schedule, momentum=config.momentum, weight_decay=wd)
    return keras.optimizers.Adam(schedule, weight_decay=wd) if not wd else \
        keras.optimizers.AdamW(schedule, weight_decay=wd)


@dataclasses.dataclass
class Setup:
    """Everything ``fit`` needs, built by ``setup`` (steps 1-3 of ``run``)."""
    config: TrainConfig       # resolved, with the full codec config
    strategy: object
    policy: str               # the Keras dtype policy in force
    task: object              # tasks.BottomUpTask | tasks.TopDownTask
    paths: DataPaths
    steps: int                # steps per epoch
    train_ds: object          # the task's tf.data pipeline (repeats forever)
    model: object             # compiled in the strategy scope
    backup_dir: str
    start_epoch: int
    distill: object = None    # distill_step.DistillData of a teacher-student run


def setup(config: TrainConfig) -> Setup:
    """Strategy, precision, data, pipeline and the compiled model of a run.

    ``run`` trains what this returns; benchmarks (``benchmarks/train_throughput.py``)
    time ``fit`` on it, so they measure the very model, optimizer and input pipeline
    of a training run.
    """
    config = config.resolved()
    from keras_pose.train import distribute

    strategy = distribute.make_strategy(config.strategy, config.cpu_replicas)
    import keras
    import tensorflow as tf

    from keras_pose.models import presets
    from keras_pose.train import tasks
    from keras_pose.train.callbacks import read_backup, restore_backup

    keras.utils.set_random_seed(config.seed)
    if config.deterministic:
        tf.config.experimental.enable_op_determinism()
    policy = distribute.set_precision(config.mixed_precision)
    chief = distribute.is_chief()
    from keras_pose.train.config import keypoint_spec

    spec = keypoint_spec(config)
    model_cfg = presets.for_spec(presets.get_preset(config.preset, **(config.model or {})), spec)
    task = tasks.get_task(config.task, model_cfg, config.codec, preset=config.preset, spec=spec)
    # The full codec config keeps a resumed run identical; the keypoint spec itself is
    # saved (no file needed again); the descriptor is what evaluation, export and
    # keras_pose.load read.
    config = config.replace(codec=task.codec.get_config(), keypoints=spec.to_dict())
    check_resume(config)  # before anything is written: a run folder holds one model
    paths = prepare_data(config, task.input_size, spec)
    _check_paths(paths, unlabeled=config.dataset == "images")

    replicas = strategy.num_replicas_in_sync
    if config.batch_size % replicas:
        raise ValueError(f"--batch_size {config.batch_size} is not divisible by {replicas} replicas")
    # The synthetic images are generated at the model's input size, so the
    # main-person area rule (32*32 px at COCO's ~512 px scale) shrinks with it.
    min_area = (32 * 32 * (task.input_size[0] / 512) ** 2) if config.dataset == "synthetic" else None
    distill = None
    if config.teacher:   # teacher-student training (keras_pose/train/distill_step.py)
        from keras_pose.train.distill_step import DistillData
        distill = DistillData(config, task, paths, min_area)
        num_samples = len(distill.loader)
    else:
        source = task.source(paths.train_annotations, paths.train_images, min_area,
                             config.bad_annotations)
        num_samples = len(source)
    # Only once the data passed its checks does the run folder get its config.
    os.makedirs(config.model_dir, exist_ok=True)
    if chief:
        config.save(os.path.join(config.model_dir, "config.json"), descriptor=task.descriptor)
    steps = config.steps_per_epoch or max(1, num_samples // config.batch_size)
    # Every worker backs up its own state (a shared file system must not see two
    # writers); the chief's lives in backup/, worker i's in backup/worker_i.
    backup_dir = os.path.join(config.model_dir, "backup")
    if not chief:
        backup_dir = os.path.join(backup_dir, f"worker_{distribute.task_index()}")
    start_epoch = int(read_backup(backup_dir).get("epoch", 0))
    start_index = start_epoch * steps * config.batch_size
    train_ds = distill.dataset(start_index) if distill else \
        task.dataset(source, config, start_index=start_index)

    with strategy.scope():
        model = presets.build_model(model_cfg)
        if config.sync_batchnorm and replicas > 1:
            model = _with_sync_batchnorm(model)
        if config.init_from:
            _load_initial_weights(model, config.init_from)
        optimizer = make_optimizer(config, steps, replicas)
        losses, weights = task.losses(config.loss, model)
        model.compile(optimizer=optimizer, loss=losses, loss_weights=weights,
                      jit_compile=config.jit_compile)
        if distill:
            distill.attach(model)   # without a cache the teacher runs inside the step
        if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
            _prebuild_for_multi_worker(model, train_ds)
        if start_epoch:
            restore_backup(model, backup_dir)
    return Setup(config, strategy, policy, task, paths, steps, train_ds, model, backup_dir,
                 start_epoch, distill)


def run(config: TrainConfig, verbose: int = 1) -> dict:
    """Train (or resume) one run; returns a summary dict (also in metrics.json)."""
    s = setup(config)
    config, task, paths, model, steps = s.config, s.task, s.paths, s.model, s.steps
    start_epoch, backup_dir, policy, distill = s.start_epoch, s.backup_dir, s.policy, s.distill
    import keras

    from keras_pose.train import distribute
    from keras_pose.train.callbacks import (AtomicWeightsCheckpoint, CocoEvalCallback,
                                            EpochBackup, LearningRateLogger,
                                            NanGuard, TimeBudget)
    chief = distribute.is_chief()
    # The validation file is checked once here, before fit (skip or strict, like the
    # training file), so a bad entry never surfaces from inside an epoch's evaluation.
    eval_fn = None
    if paths.val_annotations and os.path.isfile(paths.val_annotations):
        from keras_pose.data.coco import load_annotations
        val = load_annotations(paths.val_annotations, config.bad_annotations, task.codec.spec)
        eval_fn = task.evaluator(val, paths.val_images, config)
    budget = TimeBudget(config.time_budget_s)
    eval_cb = CocoEvalCallback(eval_fn, config.eval_every, config.epochs) if eval_fn else None
    callbacks = [EpochBackup(backup_dir), NanGuard(), budget,
                 LearningRateLogger()]
    if eval_cb:
        callbacks.append(eval_cb)
    if chief:
        ckpt_dir = os.path.join(config.model_dir, "checkpoints")
        os.makedirs(ckpt_dir, exist_ok=True)
        callbacks += [
            AtomicWeightsCheckpoint(os.path.join(ckpt_dir, "last.weights.h5")),
            keras.callbacks.TensorBoard(os.path.join(config.model_dir, "logs"), update_freq="epoch"),
            keras.callbacks.CSVLogger(os.path.join(config.model_dir, "history.csv"), append=True),
        ]
    if start_epoch:
        print(f"Resuming {config.model_dir} from epoch {start_epoch}", flush=True)
    t0 = budget.start = time.monotonic()   # the budget counts fit's set-up and callbacks too
    history = model.fit(s.train_ds, epochs=config.epochs, initial_epoch=start_epoch,
                        steps_per_epoch=steps,
                        callbacks=callbacks, verbose=verbose, shuffle=False)
    train_s = time.monotonic() - t0
    epochs_run = len(history.history.get("loss", []))

    summary = {"preset": config.preset, "task": config.task, "policy": policy,
               "replicas": s.strategy.num_replicas_in_sync, "steps_per_epoch": steps,
               "epochs_completed": start_epoch + epochs_run,
               "train_seconds": round(train_s, 1), "stopped_by_time_budget": budget.stopped_early,
               "final_loss": float(history.history["loss"][-1]) if epochs_run else None,
               "eval_history": eval_cb.history if eval_cb else []}
    if distill:
        from keras_pose.train.distill_step import describe
        summary["distillation"] = describe(distill)
    if chief:
        with atomic_path(os.path.join(config.model_dir, "model.keras"), suffix=".keras") as tmp:
            model.save(tmp)
        if eval_fn:
            stats = eval_fn(model, verbose=True)
            summary["val"] = stats
        atomic_write_json(os.path.join(config.model_dir, "metrics.json"), summary)
    return {"model": model, "summary": summary}


def _with_sync_batchnorm(model):
    """The same functional model with every BatchNormalization synchronised.

    The authors train with SyncBN (apex); without it each replica normalises
    with, and accumulates moving statistics from, its own slice of the batch.
    """
    import keras

    def clone(layer):
        cfg = layer.get_config()
        if isinstance(layer, keras.layers.BatchNormalization):
            cfg["synchronized"] = True
        return layer.__class__.from_config(cfg)
    synced = keras.models.clone_model(model, clone_function=clone)
    synced.set_weights(model.get_weights())
    return synced


def _prebuild_for_multi_worker(model, dataset) -> None:
    """Work around Keras 3.15 ``fit`` under MultiWorkerMirroredStrategy.

    Before training, ``fit`` takes one *distributed* batch and averages it with
    ``strategy.reduce`` just to learn the input shapes for its symbolic build;
    the collective all-reduce cannot do that eagerly and fails with "Attempt to
    convert a value (PerReplica ...)" (keras-team/keras#20585). We run the same
    symbolic build on one local batch and skip that step; training itself is
    Keras' own distributed ``fit``.
    """
    batch = next(iter(dataset.take(1)))
    model._symbolic_build(data_batch=batch)
    model._maybe_symbolic_build = lambda *args, **kwargs: None
    # Keras then averages each replica's logged scalars with
    # strategy.reduce("MEAN", v, axis=0), which fails on a 0-d tensor under the
    # collective strategy; hand it (1,)-shaped values, so axis 0 exists and the
    # result is the cross-worker mean as intended.
    import tensorflow as tf

    step = model.train_step
    model.train_step = lambda data: {k: tf.reshape(v, [1]) for k, v in step(data).items()}


def _load_initial_weights(model, path: str) -> None:
    """Start from another run's weights (``--init_from``): .keras, .weights.h5 or a model_dir."""
    import keras

    if os.path.isdir(path):
        path = os.path.join(path, "model.keras")
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: --init_from checkpoint not found")
    if path.endswith(".keras"):
        src = keras.saving.load_model(path, compile=False)
        model.set_weights(src.get_weights())
    else:
        model.load_weights(path)
    print(f"Initialised weights from {path}", flush=True)


def products(config: TrainConfig, model, val_images: str | None, input_size,
             descriptor) -> dict:
    """Quickstart extras: int8 TFLite export (validated) and an annotated picture."""
    import cv2

    out = {}
    if not val_images or not os.path.isdir(val_images):
        return out
    files = sorted(f for f in os.listdir(val_images) if f.lower().endswith((".jpg", ".png")))
    if not files:
        return out
    tflite_dir = os.path.join(config.model_dir, "tflite_int8")
    from keras_pose.inference.loader import load, predictor_for

    predictor = predictor_for(model, descriptor)
    if config.export_int8:
        from keras_pose.export import tflite as export_lib

        calib = export_lib.calibration_images(val_images, 32, tuple(input_size), seed=config.seed)
        side = export_lib.export_tflite(model, tflite_dir, quantize="int8", calibration=calib,
                                        config=config.to_dict(), descriptor=descriptor)
        out["tflite_int8"] = {"path": os.path.join(tflite_dir, "model.tflite"),
                              "size_bytes": side.get("size_bytes"),
                              "validation": side.get("validation")}
        predictor = load(os.path.join(tflite_dir, "model.tflite"))  # the picture shows int8
    if config.demo_image:
        from keras_pose.io import load_image
        from keras_pose.visualize import draw_poses

        image = load_image(os.path.join(val_images, files[0]))
        poses = predictor.predict(image)
        # The picture shows persons with at least 5 keypoints; the AP evaluation
        # keeps every person (COCOeval ranks them by score).
        poses = poses.select((poses.keypoints[..., 2] > 0).sum(1) >= 5)
        canvas = draw_poses(image, poses, descriptor.spec, ids=list(range(len(poses))))
        big = cv2.resize(canvas, None, fx=3, fy=3, interpolation=cv2.INTER_NEAREST) \
            if max(canvas.shape[:2]) < 320 else canvas
        path = os.path.join(config.model_dir, "demo.png")
        cv2.imwrite(path, cv2.cvtColor(big, cv2.COLOR_RGB2BGR))
        out["demo_image"] = path
    return out


def main(config: TrainConfig) -> dict:
    """``training/train.py``: train, evaluate, and (chief only) write the products."""
    from keras_pose.train.callbacks import TrainingDiverged

    t0 = time.monotonic()
    try:
        result = run(config)
    except TrainingDiverged as e:
        raise SystemExit(f"error: {e}") from None
    summary, model = result["summary"], result["model"]
    from keras_pose.train import distribute

    if distribute.is_chief():
        cfg = TrainConfig.load(os.path.join(config.model_dir, "config.json"))
        from keras_pose.models import presets
        from keras_pose.train.config import keypoint_spec
        input_size = presets.get_preset(cfg.preset).input_size
        paths = prepare_data(cfg, input_size, keypoint_spec(cfg))
        if cfg.task == "bottom_up":
            descriptor = read_descriptor(os.path.join(config.model_dir, "config.json"))
            summary.update(products(cfg, model, paths.val_images, input_size, descriptor))
        summary["total_seconds"] = round(time.monotonic() - t0, 1)
        atomic_write_json(os.path.join(cfg.model_dir, "metrics.json"), summary, default=str)
        val = summary.get("val", {})
        print(f"\nDone in {summary['total_seconds']} s: {summary['epochs_completed']} epochs x "
              f"{summary['steps_per_epoch']} steps; val AP {val.get('AP', float('nan')):.3f}; "
              f"products in {cfg.model_dir}", flush=True)
    return summary
