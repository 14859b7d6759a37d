"""Training-step time of a bottom-up preset with the fused BatchNorm vs Keras' own.

Builds the preset (its BatchNorms are ``blocks.FusedBatchNormalization``) and a
clone with ``keras.layers.BatchNormalization`` in their place (same weights),
compiles both like ``train_lib`` (Adam, L2 over every output), and times
``fit`` on one cached random batch in alternating rounds, so both see the same
machine state. Prints ONE JSON object: median and best ms per step of each and
the ratio fused / keras (< 1: the fused layer is faster).

    python benchmarks/train_step.py [--preset imhn_tiny] [--batch 8] [--rounds 12] [--steps 5]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--preset", default="imhn_tiny")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--rounds", type=int, default=12)
    p.add_argument("--steps", type=int, default=5, help="fit steps per timed round")
    args = p.parse_args()

    import keras
    import numpy as np
    import tensorflow as tf

    from keras_pose.train import tasks
    from keras_pose.models import blocks, presets

    cfg = presets.get_preset(args.preset)
    task = tasks.get_task("bottom_up", cfg)
    fused = presets.from_preset(args.preset)

    def plain_bn(layer):
        if isinstance(layer, blocks.FusedBatchNormalization):
            return keras.layers.BatchNormalization.from_config(layer.get_config())
        return layer.__class__.from_config(layer.get_config())

    plain = keras.models.clone_model(fused, clone_function=plain_bn)
    plain.set_weights(fused.get_weights())
    models = {"fused": fused, "keras": plain}
    for m in models.values():
        losses, weights = task.losses("l2", m)
        m.compile(optimizer=keras.optimizers.Adam(1e-3), loss=losses, loss_weights=weights,
                  jit_compile=False)
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (args.batch, *cfg.input_size, 3)).astype("float32")
    ys = tuple(rng.uniform(0, 1, (args.batch, *o.shape[1:-1], o.shape[-1] + 1)).astype("float32")
               for o in fused.outputs)
    ds = tf.data.Dataset.from_tensors((x, ys)).repeat()
    for m in models.values():  # trace and warm up
        m.fit(ds, steps_per_epoch=3, epochs=1, verbose=0)
    ms = {k: [] for k in models}
    for _ in range(args.rounds):
        for k, m in models.items():
            t = time.perf_counter()
            m.fit(ds, steps_per_epoch=args.steps, epochs=1, verbose=0)
            ms[k].append(1000 * (time.perf_counter() - t) / args.steps)
    out = {"preset": args.preset, "batch": args.batch, "rounds": args.rounds, "steps": args.steps}
    for k, v in ms.items():
        out[f"{k}_ms_per_step_median"] = round(float(np.median(v)), 1)
        out[f"{k}_ms_per_step_best"] = round(float(np.min(v)), 1)
    out["ratio_fused_over_keras_median"] = round(float(np.median(ms["fused"]) / np.median(ms["keras"])), 3)
    out["ratio_fused_over_keras_best"] = round(float(np.min(ms["fused"]) / np.min(ms["keras"])), 3)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
