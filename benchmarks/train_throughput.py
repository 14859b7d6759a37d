"""Training throughput of a preset: images per second of ``model.fit`` steps, and peak memory.

What is timed is a real training run's set-up, ``keras_pose.train.loop.setup``: the
preset's model, its recipe's optimizer and losses (``keras_pose.train.recipes``), the
precision policy and ``jit_compile`` (XLA) as ``training/train.py`` sets them, and the
task's tf.data pipeline (reading, augmentation, target encoding) over a synthetic set
generated at the preset's input size into a temporary folder. ``fit`` runs
``--warmup_steps`` steps (the first traces, and with ``--jit_compile`` XLA-compiles, the
step) and then ``--steps`` timed ones. A callback reads each step's loss, which waits for
the device, so a step's time runs from one step's end to the next, input waits included;
``images_per_s`` is the batch size over the median step time.

Peak memory: on a GPU TensorFlow's allocator peak on GPU:0
(``tf.config.experimental.get_memory_info``); on a CPU the process' peak resident set
(``ru_maxrss``: TensorFlow itself and the input pipeline included), named in ``memory``.

    python benchmarks/train_throughput.py --preset imhn_4s_512 --batch_size 32 \\
        --precision mixed_float16 [--jit_compile] [--steps 20] [--warmup_steps 3]

Prints one JSON object (docs/gpu.md explains the fields and the prepared GPU run).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import platform
import resource
import shutil
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

# The --precision names are Keras' policy names; TrainConfig.mixed_precision's values.
PRECISIONS = {"float32": "off", "mixed_float16": "float16", "mixed_bfloat16": "bfloat16"}


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _device() -> dict:
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        name = tf.config.experimental.get_device_details(gpus[0]).get("device_name", "GPU")
        return {"kind": "GPU", "name": name, "count": len(gpus)}
    return {"kind": "CPU", "name": _cpu_name(), "count": os.cpu_count()}


def _peak_memory(device: dict) -> dict:
    if device["kind"] == "GPU":
        import tensorflow as tf

        peak = tf.config.experimental.get_memory_info("GPU:0")["peak"]
        return {"peak_mb": round(peak / 2**20, 1), "memory": "GPU:0 allocator peak"}
    # Linux reports ru_maxrss in KiB.
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"peak_mb": round(rss / 1024, 1), "memory": "CPU: process peak RSS (no GPU)"}


def step_timer():
    """A Keras callback recording each train step's wall time (s) in ``.times``."""
    import keras

    class StepTimer(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.times, self.last = [], None

        def on_train_batch_begin(self, batch, logs=None):
            if self.last is None:
                self.last = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            float(logs["loss"])  # waits until the step has run on the device
            now = time.perf_counter()
            self.times.append(now - self.last)
            self.last = now
            self.loss = float(logs["loss"])
    return StepTimer()


def measure(args, work_dir: str) -> dict:
    import numpy as np

    from keras_pose.models import presets
    from keras_pose.train import loop, recipes
    from keras_pose.train.config import TrainConfig

    recipe = presets.preset_recipe(args.preset)
    config = TrainConfig(
        task=recipes.get_recipe(recipe).task, preset=args.preset, dataset="synthetic",
        data_dir=args.data_dir or os.path.join(work_dir, "data"),
        synthetic_train_images=args.images or max(64, 2 * args.batch_size),
        synthetic_val_images=0, model_dir=os.path.join(work_dir, "run"),
        batch_size=args.batch_size, epochs=1, steps_per_epoch=args.warmup_steps + args.steps,
        mixed_precision=PRECISIONS[args.precision], jit_compile=args.jit_compile,
        export_int8=False, demo_image=False)
    t0 = time.perf_counter()
    s = loop.setup(config)
    setup_s = time.perf_counter() - t0
    timer = step_timer()
    s.model.fit(s.train_ds, epochs=1, steps_per_epoch=s.steps, callbacks=[timer], verbose=0,
                shuffle=False)
    device = _device()
    timed = np.array(timer.times[args.warmup_steps:])
    median = float(np.median(timed))
    r = s.config
    return {
        "preset": args.preset, "task": r.task, "input_size": list(s.task.input_size),
        "batch_size": args.batch_size, "precision": s.policy, "jit_compile": args.jit_compile,
        "recipe": recipe, "optimizer": r.optimizer, "loss": r.loss,
        "images_per_s": round(args.batch_size / median, 2),
        "images_per_s_per_device": round(args.batch_size / median / s.strategy.num_replicas_in_sync, 2),
        "step_ms_median": round(1000 * median, 1),
        "step_ms_p10_p90": [round(1000 * float(np.percentile(timed, q)), 1) for q in (10, 90)],
        "timed_steps": len(timed), "warmup_steps": args.warmup_steps,
        "first_step_s": round(timer.times[0], 1), "setup_s": round(setup_s, 1),
        "final_loss": timer.loss, **_peak_memory(device),
        "device": device, "replicas": s.strategy.num_replicas_in_sync,
        "tensorflow": __import__("tensorflow").__version__,
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--preset", default="imhn_test")
    p.add_argument("--batch_size", type=int, default=8)
    p.add_argument("--precision", choices=sorted(PRECISIONS), default="float32")
    p.add_argument("--jit_compile", action=argparse.BooleanOptionalAction, default=False,
                   help="XLA-compile the train step")
    p.add_argument("--steps", type=int, default=20, help="timed steps (the median is reported)")
    p.add_argument("--warmup_steps", type=int, default=3, help="untimed steps first (trace)")
    p.add_argument("--images", type=int, default=0,
                   help="synthetic training images (default: max(64, 2 x batch))")
    p.add_argument("--data_dir", default="",
                   help="keep the synthetic set here, reused by later runs (default: a temp folder)")
    args = p.parse_args()
    for name in ("batch_size", "steps", "warmup_steps"):
        if getattr(args, name) < 1:
            p.error(f"--{name} must be >= 1, got {getattr(args, name)}")
    work_dir = tempfile.mkdtemp(prefix="train_throughput_")
    try:
        result = measure(args, work_dir)
    except ValueError as e:
        sys.exit(f"error: {e}")
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
