"""Subprocess entry for the training tests: runs train_lib.run on a JSON TrainConfig
and saves the final weights (npz), so tests can compare runs and workers.

usage: python tests/_train_worker.py CONFIG_JSON OUT_NPZ [NAN_AT_STEP]

NAN_AT_STEP (NaN-guard test): the training dataset's batch of that global step is
made NaN by wrapping the task's ``dataset``; the user's TrainConfig has no such hook.
"""
import json
import sys

import numpy as np


def poison_task_datasets(bad_step: int) -> None:
    """Make the batch of global step ``bad_step`` NaN in every task's training set."""
    import tensorflow as tf

    from keras_pose.train import tasks

    def wrap(original):
        def dataset(self, source, config, start_index=0):
            ds = original(self, source, config, start_index=start_index)

            def maybe(i, xy):
                x, y = xy
                return tf.cond(tf.equal(i, bad_step), lambda: x * np.float32("nan"), lambda: x), y
            return ds.enumerate().map(maybe)
        return dataset

    for cls in (tasks.BottomUpTask, tasks.TopDownTask):
        cls.dataset = wrap(cls.dataset)


def main():
    import keras
    keras.config.disable_traceback_filtering()
    config_path, out = sys.argv[1], sys.argv[2]
    if len(sys.argv) > 3:
        poison_task_datasets(int(sys.argv[3]))
    from keras_pose.train import loop as train_lib
    from keras_pose.train.config import TrainConfig

    with open(config_path, encoding="utf-8") as f:
        config = TrainConfig.from_dict(json.load(f))
    try:
        result = train_lib.run(config, verbose=0)
    except Exception as e:  # report the class for the test
        import traceback
        traceback.print_exc()
        print(f"TRAIN-ERROR {type(e).__name__}: {e}", flush=True)
        sys.exit(3)
    weights = result["model"].get_weights()
    np.savez(out, *weights)
    print("TRAIN-OK", json.dumps(result["summary"], default=str), flush=True)


if __name__ == "__main__":
    main()
