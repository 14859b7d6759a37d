"""Does int8 pay off on this CPU? fp32 vs int8 LiteRT latency of a plain conv stack.

A model with nothing but 3x3 convolutions + ReLU (the best case for int8: every
op fuses, no requantizing adds, no SE gates) is converted to fp32 and to
full-integer int8 and timed through ``ai_edge_litert`` with XNNPACK, the two
interpreters alternating run by run. The ratio is the ceiling of the int8 gain
any model can reach on this machine: x86 CPUs without VNNI and ARM cores
without the dot-product extension run XNNPACK's int8 convolutions at about
the fp32 rate, while VNNI / ARMv8.2 ``sdot`` cores run them several times
faster (7x measured on an AVX-512 VNNI + AMX Xeon).

    python benchmarks/int8_probe.py [--size 64] [--channels 64] [--layers 8] \
        [--num_threads 2] [--runs 30]

Prints one JSON object (latencies in ms, the fp32/int8 ratio, the CPU's
relevant instruction-set flags where /proc/cpuinfo exists).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from benchmarks._harness import load_litert, summary, time_rounds  # noqa: E402


def cpu_flags() -> list:
    wanted = {"avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "amx_int8",
              "asimddp", "i8mm"}
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            words = set(f.read().split())
    except OSError:
        return []
    return sorted(wanted & words)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--size", type=int, default=64, help="feature map side")
    p.add_argument("--channels", type=int, default=64)
    p.add_argument("--layers", type=int, default=8)
    p.add_argument("--num_threads", type=int, default=2)
    p.add_argument("--runs", type=int, default=30)
    args = p.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    import keras
    import numpy as np
    import tensorflow as tf

    s, c = args.size, args.channels
    inp = keras.Input((s, s, c))
    x = inp
    for _ in range(args.layers):
        x = keras.layers.Conv2D(c, 3, padding="same", activation="relu")(x)
    model = keras.Model(inp, x)
    rng = np.random.default_rng(0)
    samples = [rng.uniform(0, 1, (1, s, s, c)).astype("float32") for _ in range(8)]

    interpreters, kernels = {}, {}
    for mode in ("fp32", "int8"):
        conv = tf.lite.TFLiteConverter.from_keras_model(model)
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        if mode == "int8":
            conv.optimizations = [tf.lite.Optimize.DEFAULT]
            conv.representative_dataset = lambda: ([v] for v in samples)
            conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        it, kernels[mode] = load_litert(conv.convert(), num_threads=args.num_threads)
        d = it.get_input_details()[0]
        it.set_tensor(d["index"], samples[0].astype(d["dtype"]))
        interpreters[mode] = it

    # The two interpreters alternate run by run, after 3 warm-up invokes each.
    times = time_rounds({m: it.invoke for m, it in interpreters.items()}, args.runs, warmup=3)
    ms = {m: round(summary(v)["median_ms"], 2) for m, v in times.items()}
    macs = args.layers * s * s * c * c * 9
    print(json.dumps({
        "machine": {"processor": platform.processor() or platform.machine(),
                    "cpu_flags": cpu_flags(), "num_threads": args.num_threads,
                    "kernels": kernels},
        "model": {"layers": args.layers, "size": s, "channels": c, "gmacs": round(macs / 1e9, 3)},
        "median_ms": ms,
        "fp32_over_int8": round(ms["fp32"] / ms["int8"], 2),
        "gmacs_per_s": {m: round(macs / 1e9 / (v / 1e3), 1) for m, v in ms.items()},
    }, indent=1))


if __name__ == "__main__":
    main()
