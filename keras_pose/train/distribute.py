"""Distribution strategy and mixed-precision policy for training.

TensorFlow's own engines only: ``MirroredStrategy`` over the local GPUs,
``MultiWorkerMirroredStrategy`` configured by ``TF_CONFIG`` for several
machines, ``OneDeviceStrategy``. Logical CPU devices (``cpu_replicas``) exist to
exercise the distributed path on a CPU box; they must be configured before any
TensorFlow op runs (docs/tf_stack_notes.md §5), which is why this is the first thing
``train_lib.run`` does.
"""
from __future__ import annotations

import json
import logging
import os

import tensorflow as tf

log = logging.getLogger(__name__)


def _split_cpu(n: int) -> None:
    cpus = tf.config.list_physical_devices("CPU")
    try:
        tf.config.set_logical_device_configuration(
            cpus[0], [tf.config.LogicalDeviceConfiguration() for _ in range(n)])
    except RuntimeError as e:  # already initialised: keep what exists
        log.warning("cannot split the CPU into %d logical devices: %s", n, e)


def make_strategy(name: str = "auto", cpu_replicas: int = 0) -> tf.distribute.Strategy:
    """Create the strategy named by ``--strategy``.

    auto: multi_worker when TF_CONFIG names more than one worker, mirrored over
    the GPUs when there are several, else the default (single-device) strategy.
    """
    if cpu_replicas > 1:
        _split_cpu(cpu_replicas)
    gpus = tf.config.list_physical_devices("GPU")
    tf_config = json.loads(os.environ.get("TF_CONFIG", "{}") or "{}")
    workers = tf_config.get("cluster", {}).get("worker", [])
    if name == "auto":
        if len(workers) > 1:
            name = "multi_worker"
        elif len(gpus) > 1 or cpu_replicas > 1:
            name = "mirrored"
        else:
            return tf.distribute.get_strategy()
    if name == "multi_worker":
        if not workers:
            raise ValueError("--strategy multi_worker needs TF_CONFIG with a cluster of workers")
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "mirrored":
        if cpu_replicas > 1 and not gpus:
            devices = [d.name for d in tf.config.list_logical_devices("CPU")][:cpu_replicas]
            return tf.distribute.MirroredStrategy(devices)
        return tf.distribute.MirroredStrategy()
    if name == "one_device":
        return tf.distribute.OneDeviceStrategy("/gpu:0" if gpus else "/cpu:0")
    raise ValueError(f"unknown strategy {name!r}")


def set_precision(mode: str = "auto") -> str:
    """Set the global Keras dtype policy; returns the policy name.

    auto: mixed_float16 on a GPU, float32 elsewhere (bfloat16 matmuls on
    most CPUs are slower than float32). Losses cast to float32 themselves and
    the model outputs are float32, so the loss is always computed in float32.
    """
    import keras

    if mode == "auto":
        mode = "float16" if tf.config.list_physical_devices("GPU") else "off"
    policy = {"off": "float32", "float16": "mixed_float16", "bfloat16": "mixed_bfloat16"}[mode]
    keras.mixed_precision.set_global_policy(policy)
    return policy


def is_chief() -> bool:
    """True on the worker that writes checkpoints, logs and products.

    With TF_CONFIG: the "chief" task, or worker 0 when the cluster has no chief.
    """
    tf_config = json.loads(os.environ.get("TF_CONFIG", "{}") or "{}")
    task = tf_config.get("task")
    if not task:
        return True
    if task.get("type") == "chief":
        return True
    has_chief = bool(tf_config.get("cluster", {}).get("chief"))
    return task.get("type") == "worker" and int(task.get("index", 0)) == 0 and not has_chief


def task_index() -> int:
    """This worker's index in TF_CONFIG (0 without one)."""
    tf_config = json.loads(os.environ.get("TF_CONFIG", "{}") or "{}")
    return int(tf_config.get("task", {}).get("index", 0))
