"""Subprocess entry for the training tests: runs train_lib.run on a JSON TrainConfig
and saves the final weights (npz), so tests can compare runs and workers.

usage: python tests/_train_worker.py CONFIG_JSON OUT_NPZ
"""
import json
import sys

import numpy as np


def main():
    import keras
    keras.config.disable_traceback_filtering()
    config_path, out = sys.argv[1], sys.argv[2]
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
