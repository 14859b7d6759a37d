"""Subprocess body for test_losses.py::test_losses_under_mirrored_strategy.

Logical CPU devices must be configured before TensorFlow initialises, hence a
separate process. One SGD step on the same global batch with 1 and 2 replicas
must give the same weights (docs/tf_stack_notes.md §5): the per-sample losses plus Keras'
sum_over_batch_size reduction divide by the global batch on every replica.
Prints one JSON object.
"""
import json

import tensorflow as tf

cpus = tf.config.list_physical_devices("CPU")
tf.config.set_logical_device_configuration(cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2)

import keras  # noqa: E402
import numpy as np  # noqa: E402

from keras_pose import losses  # noqa: E402

rng = np.random.default_rng(0)
B, C = 8, 3
x = rng.uniform(0, 1, (B, 8, 8, 2)).astype(np.float32)
ys = []
for s in (8, 4):
    tgt = rng.uniform(0, 1, (B, s, s, C)) * (rng.uniform(size=(B, s, s, C)) > 0.5)
    mask = (rng.uniform(size=(B, s, s, 1)) > 0.2)
    ys.append(np.concatenate([tgt, mask], -1).astype(np.float32))
td_y = np.concatenate([rng.uniform(0, 1, (B, 8, 8, 2)), np.ones((B, 8, 8, 2))], -1).astype(np.float32)


def step(strategy, kind):
    keras.utils.set_random_seed(0)
    with strategy.scope():
        inp = keras.Input((8, 8, 2))
        h = keras.layers.Conv2D(C if kind == "bu" else 2, 1, name="s0_x0")(inp)
        if kind == "bu":
            model = keras.Model(inp, [h, keras.layers.AveragePooling2D(2, name="s0_x1")(h)])
            loss = [losses.FocalL2Loss(channel_weights=[1.0, 3.0, 0.1])] * 2
            model.compile(keras.optimizers.SGD(0.05), loss=loss, jit_compile=False,
                          loss_weights=losses.bottom_up_loss_weights(1, (0.5, 2.0)))
            y = tuple(ys)
        else:
            model = keras.Model(inp, h)
            model.compile(keras.optimizers.SGD(0.05), loss=losses.RCELoss(), jit_compile=False)
            y = td_y
    w0 = [w.copy() for w in model.get_weights()]
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(B, drop_remainder=True)
    model.fit(ds, epochs=1, verbose=0)
    return w0, model.get_weights()


out = {}
# One MirroredStrategy for the process: a second instance re-uses collective
# instance keys and aborts with a shape mismatch between the two models.
mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
for kind in ("bu", "td"):
    w0, w1 = step(tf.distribute.get_strategy(), kind)
    _, w2 = step(mirrored, kind)
    out[kind] = {"update": float(max(np.abs(a - b).max() for a, b in zip(w1, w0))),
                 "max_dw": float(max(np.abs(a - b).max() for a, b in zip(w1, w2)))}
print(json.dumps(out))
