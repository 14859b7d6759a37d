"""Latency of an exported model: preprocessing, network and decoding timed separately.

  python export/benchmark_tflite.py --model exported/int8/model.tflite --runs 50 --num_threads 2

Needs only NumPy, OpenCV and ai-edge-litert (no TensorFlow import). Prints one JSON object:
median and p90 milliseconds per stage, model size, and the setup.
"""
import argparse
import json
import os
import pathlib
import sys

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # run from a checkout

from benchmarks._harness import summary, time_rounds  # noqa: E402


def benchmark(runner, image, runs=50, warmup=5) -> dict:
    """Time ``runner.predict(image)`` ``runs`` times after ``warmup`` calls; ms per stage."""
    stages = {"preprocess": [], "network": [], "decode": []}
    last = {}

    def collect(_, poses):
        last["persons"] = len(poses)
        for k, v in runner.last_timing.items():
            stages.setdefault(k, []).append(v * 1e3)

    stages["total"] = time_rounds({"total": lambda: runner.predict(image)}, runs, warmup,
                                  on_call=collect)["total"]
    out = {}
    for k, v in stages.items():
        s = summary(v, percentiles=(90,))
        out[k] = {"median_ms": s["median_ms"], "p90_ms": s["p90_ms"]}
    out["persons_last_run"] = last.get("persons", 0)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="model.tflite (model.json beside it)")
    ap.add_argument("--image", default=None, help="an image; default a synthetic 640x480 frame")
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--num_threads", type=int, default=2)
    a = ap.parse_args(argv)
    for flag, value, least in (("--runs", a.runs, 1), ("--warmup", a.warmup, 0),
                               ("--num_threads", a.num_threads, 1)):
        if value < least:
            sys.exit(f"benchmark_tflite: {flag} {value}: must be >= {least}")
    from keras_pose.inference.tflite_runner import TFLiteRunner, TFLiteRunnerError, read_image
    try:
        runner = TFLiteRunner(a.model, num_threads=a.num_threads)
        if a.image:
            image = read_image(a.image)
        else:
            image = np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    except TFLiteRunnerError as e:
        sys.exit(f"benchmark_tflite: {e}")
    res = {"model": str(a.model), "size_bytes": os.path.getsize(a.model),
           "quantize": runner.meta.get("quantize"), "input_shape": list(runner.net.input_shape),
           "input_dtype": runner.meta["input"]["dtype"], "num_threads": a.num_threads,
           "runs": a.runs, "warmup": a.warmup, "image_shape": list(image.shape)}
    res.update(benchmark(runner, image, a.runs, a.warmup))
    res["tensorflow_imported"] = "tensorflow" in sys.modules
    print(json.dumps(res))


if __name__ == "__main__":
    main()
