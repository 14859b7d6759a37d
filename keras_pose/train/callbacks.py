"""Training callbacks: NaN guard, time budget, LR logging, periodic COCO AP, atomic saves."""
from __future__ import annotations

import json
import math
import os
import time

import keras
import numpy as np

from keras_pose.io import atomic_path, atomic_write_json


class TrainingDiverged(RuntimeError):
    """The loss became NaN/inf; the last good checkpoint is left untouched."""


class NanGuard(keras.callbacks.Callback):
    """Abort at the first non-finite batch loss.

    Raising (instead of ``stop_training``, as ``TerminateOnNaN`` does) skips the
    epoch-end hooks, so ``EpochBackup``/checkpoints never write the
    poisoned weights: the last good checkpoint survives for a restart.
    """

    def __init__(self):
        super().__init__()
        self.epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            raise TrainingDiverged(
                f"loss became {float(loss)} at epoch {self.epoch + 1}, batch {batch + 1}; "
                "training stopped, the last good checkpoint is kept (lower --lr or try --loss l2)")


class TimeBudget(keras.callbacks.Callback):
    """Stop after ``seconds`` of training (checked after every batch).

    The clock starts at ``start`` (a ``time.monotonic()`` value; give the moment
    ``fit`` is called so its set-up and the epoch-end callbacks count) or else at
    ``on_train_begin``.
    """

    def __init__(self, seconds: float, start: float | None = None):
        super().__init__()
        self.seconds = float(seconds)
        self.start = start
        self.stopped_early = False

    def on_train_begin(self, logs=None):
        if self.start is None:
            self.start = time.monotonic()

    def on_train_batch_end(self, batch, logs=None):
        if self.seconds > 0 and time.monotonic() - self.start > self.seconds:
            self.model.stop_training = True
            self.stopped_early = True


class LearningRateLogger(keras.callbacks.Callback):
    """Adds the current learning rate to the epoch logs (TensorBoard, history)."""

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            opt = self.model.optimizer
            lr = opt.learning_rate
            logs["lr"] = float(np.asarray(lr(opt.iterations) if callable(lr) else lr))


class CocoEvalCallback(keras.callbacks.Callback):
    """Every ``every`` epochs, run ``evaluate_fn(model) -> stats`` and log AP/AR.

    Placed before the TensorBoard callback so ``val_AP`` reaches its logs.
    """

    def __init__(self, evaluate_fn, every: int, total_epochs: int):
        super().__init__()
        self.evaluate_fn = evaluate_fn
        self.every = int(every)
        self.total_epochs = int(total_epochs)
        self.history = []

    def on_epoch_end(self, epoch, logs=None):
        if self.every <= 0 or (epoch + 1) % self.every or epoch + 1 == self.total_epochs:
            return
        stats = self.evaluate_fn(self.model)
        self.history.append({"epoch": epoch + 1, **stats})
        if logs is not None:
            logs["val_AP"] = stats.get("AP", 0.0)
            logs["val_AR"] = stats.get("AR", 0.0)


_BACKUP_META = "backup.json"


def read_backup(backup_dir: str) -> dict:
    """The last complete backup's record {"epoch", "weights"}, or {} if none."""
    path = os.path.join(backup_dir, _BACKUP_META)
    if not os.path.isfile(path):
        return {}
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def restore_backup(model, backup_dir: str) -> int:
    """Load the last backup (weights, optimizer state, step) into a compiled model.

    Returns the number of completed epochs (0 when there is no backup).
    """
    meta = read_backup(backup_dir)
    if not meta:
        return 0
    if model.optimizer is not None and not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)
    model.load_weights(os.path.join(backup_dir, meta["weights"]))
    return int(meta["epoch"])


class EpochBackup(keras.callbacks.Callback):
    """Back up weights + optimizer state at every epoch end, atomically.

    Keras' ``BackupAndRestore`` overwrites the weights file and then the epoch
    record, so a kill between the two resumes from the new weights with the
    old epoch number (a real race when epochs are short). Here each epoch
    writes a new weights file and only then atomically replaces the one-line
    record that names it; whatever moment the process dies, the record and the
    weights it names agree. The backup is kept after training, so re-running a
    finished ``--model_dir`` resumes at the end instead of starting over.
    """

    def __init__(self, backup_dir: str):
        super().__init__()
        self.backup_dir = backup_dir

    def on_epoch_end(self, epoch, logs=None):
        os.makedirs(self.backup_dir, exist_ok=True)
        old = read_backup(self.backup_dir).get("weights")
        name = f"epoch_{epoch + 1:04d}.weights.h5"
        self.model.save_weights(os.path.join(self.backup_dir, name), overwrite=True)
        atomic_write_json(os.path.join(self.backup_dir, _BACKUP_META),
                          {"epoch": epoch + 1, "weights": name})
        if old and old != name:
            try:
                os.remove(os.path.join(self.backup_dir, old))
            except OSError:
                pass


class AtomicWeightsCheckpoint(keras.callbacks.Callback):
    """Save the weights to ``path`` (a ``.weights.h5``) at every epoch end, atomically.

    Keras' ``ModelCheckpoint`` rewrites the file in place, so a kill mid-save leaves
    a truncated HDF5 under the final name; here it is written beside and renamed.
    """

    def __init__(self, path: str):
        super().__init__()
        self.path = path

    def on_epoch_end(self, epoch, logs=None):
        with atomic_path(self.path, suffix=".weights.h5") as tmp:
            self.model.save_weights(tmp)
