"""Subprocess: one SGD step of a tiny IMHN on the same global batch, on one
device and under MirroredStrategy over 2 logical CPUs; prints the max |dw|.

BatchNorm is synchronised across replicas (train_lib's SyncBN, as the authors
train), so two replicas see the statistics of the whole global batch; the
distributed gradient aggregation and global-batch loss scaling must then agree
with one device to float precision.
"""
import numpy as np
import tensorflow as tf

cpus = tf.config.list_physical_devices("CPU")
tf.config.set_logical_device_configuration(cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2)

import keras  # noqa: E402

from keras_pose.models import presets  # noqa: E402
from keras_pose.train.loop import _with_sync_batchnorm  # noqa: E402
from keras_pose.train.tasks import get_task  # noqa: E402


def step(strategy, x, ys, init):
    cfg = presets.get_preset("imhn_test")
    task = get_task("bottom_up", cfg)
    with strategy.scope():
        model = _with_sync_batchnorm(presets.from_preset("imhn_test"))
        model.set_weights(init)
        losses, weights = task.losses("focal_l2", model)
        model.compile(keras.optimizers.SGD(1e-5, momentum=0.9), loss=losses,
                      loss_weights=weights, jit_compile=False)
    ds = tf.data.Dataset.from_tensors((x, ys))
    model.fit(ds, epochs=1, verbose=0)
    return model.get_weights(), [v.trainable for v in model.weights]


def main():
    keras.utils.set_random_seed(0)
    init = presets.from_preset("imhn_test").get_weights()
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (8, 64, 64, 3)).astype(np.float32)
    shapes = [(16, 16), (8, 8), (4, 4)]
    ys = tuple(np.concatenate([rng.uniform(0, 1, (8, h, w, 50)).astype(np.float32),
                               (rng.uniform(0, 1, (8, h, w, 1)) > 0.2).astype(np.float32)], -1)
               for h, w in shapes)
    one, trainable = step(tf.distribute.OneDeviceStrategy("/cpu:0"), x, ys, init)
    two, _ = step(tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]), x, ys, init)
    moved = max(float(np.abs(a - b).max()) for a, b in zip(one, init))
    # Relative to the weight's own scale: BN moving variances are O(1e3) for
    # early layers, where float32 summation order alone moves the 8th digit.
    diff = max(float((np.abs(a - b) / np.maximum(1.0, np.abs(a))).max()) for a, b in zip(one, two))
    diff_trainable = max(float(np.abs(a - b).max()) for a, b, t in zip(one, two, trainable) if t)
    print(f"RESULT moved={moved:.3e} diff={diff:.3e} diff_trainable={diff_trainable:.3e}",
          flush=True)


if __name__ == "__main__":
    main()
