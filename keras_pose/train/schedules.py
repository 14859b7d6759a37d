"""Learning-rate schedule of both recipes, driven by the optimizer's step counter.

Because the schedule is a pure function of ``optimizer.iterations``, a run
restored from its backup (which holds the optimizer state) resumes
with its schedule exactly where it stopped.
"""
from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_pose")
class WarmupStepSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up, then step decay.

    lr(step) = base_lr * warm(step) * decay(epoch), epoch = step // steps_per_epoch

    * warm = (1 + step) / (warmup_epochs * steps_per_epoch) while epoch < warmup
      (the authors' per-iteration warm-up, ``docs/method_bottom_up.md`` §6.1), else 1;
    * decay = factor ** (epoch // decay_every) when ``decay_every`` is set (the
      IMHN recipe: x0.2 every 15 epochs), else factor ** (number of
      ``boundaries`` passed) (the top-down recipe: x0.1 at epochs 90 and 120).
    """

    def __init__(self, base_lr, steps_per_epoch, warmup_epochs=0.0, decay_every=None,
                 factor=0.2, boundaries=()):
        self.base_lr = float(base_lr)
        self.steps_per_epoch = int(steps_per_epoch)
        self.warmup_epochs = float(warmup_epochs)
        self.decay_every = int(decay_every) if decay_every else None
        self.factor = float(factor)
        self.boundaries = tuple(int(b) for b in (boundaries or ()))

    def __call__(self, step):
        step = ops.cast(step, "float32")
        epoch = ops.floor(step / float(self.steps_per_epoch))
        if self.decay_every:
            decay = ops.power(self.factor, ops.floor(epoch / float(self.decay_every)))
        else:
            passed = 0.0
            for b in self.boundaries:
                passed = passed + ops.cast(epoch >= float(b), "float32")
            decay = ops.power(self.factor, passed)
        lr = self.base_lr * decay
        warm_steps = self.warmup_epochs * self.steps_per_epoch
        if warm_steps > 0:
            lr = lr * ops.minimum(1.0, (step + 1.0) / warm_steps)
        return lr

    def get_config(self):
        return {"base_lr": self.base_lr, "steps_per_epoch": self.steps_per_epoch,
                "warmup_epochs": self.warmup_epochs, "decay_every": self.decay_every,
                "factor": self.factor, "boundaries": list(self.boundaries)}
