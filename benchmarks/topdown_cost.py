"""FasterPose (r = 8) vs SimpleBaseline cost at 256x192: params, MACs, GFLOPs, TFLite latency.

For each backbone (ResNet-50, MobileNetV2) both heads are built with random,
untrained weights (fixed seed), counted with ``keras_pose.models.flops``
(true MACs and the HRNet-repo GFLOPs convention, ``docs/method_top_down.md`` §2.2), and
converted to batch-1 fixed-size TFLite (builtin ops only) in fp32 and int8
(random-image representative dataset, uint8 io). Latency: ai_edge_litert,
2 threads, median of ``--runs`` invocations after warm-up; the two heads of a
backbone are timed in alternating rounds so machine noise hits both alike.

Prints ONE JSON object to stdout (diagnostics go to stderr). Usage:

    python benchmarks/topdown_cost.py [--runs 50] [--backbones resnet50,mobilenetv2]
        [--tflite_dir /tmp/topdown_tflite]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from benchmarks._harness import feed_random, load_litert, summary, time_rounds  # noqa: E402

INPUT = (256, 192)


def _log(*a):
    print(*a, file=sys.stderr, flush=True)


def build_pair(backbone: str):
    """(name, training model, batch-1 export model) for FasterPose r=8 and SimpleBaseline."""
    import keras
    from keras_pose.models import blocks
    from keras_pose.models.configs import FasterPoseConfig, SimpleBaselineConfig
    from keras_pose.models.fasterpose import build_fasterpose, fasterpose_inference_model
    from keras_pose.models.simple_baseline import build_simple_baseline

    keras.utils.set_random_seed(0)
    fp = build_fasterpose(FasterPoseConfig(backbone=backbone, input_size=INPUT, upscale=8))
    sb = build_simple_baseline(SimpleBaselineConfig(backbone=backbone, input_size=INPUT))
    return [("fasterpose_r8", fp, fasterpose_inference_model(fp, batch_size=1)),
            ("simple_baseline", sb, blocks.with_fixed_batch(sb, 1))]


def time_side_by_side(interpreters: dict, runs: int, warmup: int = 5) -> dict:
    """{name: (median ms, 10th-percentile ms)}: every round invokes each interpreter
    once, in turn. On a loaded machine the 10th percentile is the better estimate
    of uncontended latency; the median is what the task asks for."""
    for it in interpreters.values():
        feed_random(it)
    times = time_rounds({k: it.invoke for k, it in interpreters.items()}, runs, warmup)
    out = {}
    for k, v in times.items():
        s = summary(v)
        out[k] = (round(s["median_ms"], 2), round(s["p10_ms"], 2))
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--backbones", default="resnet50,mobilenetv2")
    ap.add_argument("--calibration", type=int, default=8, help="random images for int8")
    ap.add_argument("--tflite_dir", default=None,
                    help="keep the converted models here and reuse them on the next run "
                         "(ResNet-50 conversions take minutes)")
    args = ap.parse_args(argv)
    if args.runs < 1:
        ap.error("--runs must be >= 1")

    from keras_pose.export import tflite as export_lib
    from keras_pose.models.flops import count_model

    cal = np.random.default_rng(1).uniform(0, 255, (args.calibration,) + INPUT + (3,)).astype(np.float32)
    report = {"input_size": list(INPUT), "runs": args.runs, "threads": 2,
              "interpreter": "ai_edge_litert", "weights": "random (seed 0)", "models": {},
              "ratios": {}}
    for backbone in args.backbones.split(","):
        interp = {}
        for name, model, export_model in build_pair(backbone):
            key = f"{name}_{backbone}"
            c = count_model(model)
            entry = {k: c[k] for k in ("params", "macs", "gmacs", "hrnet_gflops", "output_shapes")}
            for q in ("fp32", "int8"):
                cached = os.path.join(args.tflite_dir, f"{key}_{q}.tflite") if args.tflite_dir else None
                if cached and os.path.isfile(cached):
                    with open(cached, "rb") as f:
                        content = f.read()
                    _log(f"{key} {q}: reusing {cached}")
                else:
                    t0 = time.perf_counter()
                    content = export_lib.convert(export_model, q, calibration=cal if q == "int8" else None)
                    _log(f"{key} {q}: converted in {time.perf_counter() - t0:.1f} s, "
                         f"{len(content) / 2**20:.2f} MiB")
                    if cached:
                        os.makedirs(args.tflite_dir, exist_ok=True)
                        with open(cached, "wb") as f:
                            f.write(content)
                # XNNPACK may refuse an untrained net's int8 model (zero-scale tensors,
                # docs/tf_stack_notes.md §3); the loader then uses the builtin kernels.
                it, kernels = load_litert(content, num_threads=2)
                interp[(q, name)] = it
                entry[f"tflite_{q}_mib"] = round(len(content) / 2 ** 20, 2)
                entry[f"tflite_{q}_kernels"] = kernels
            report["models"][key] = entry
        for q in ("fp32", "int8"):
            names = [n for (qq, n) in interp if qq == q]
            med = time_side_by_side({n: interp[(q, n)] for n in names}, args.runs)
            for n, (ms, p10) in med.items():
                report["models"][f"{n}_{backbone}"][f"latency_{q}_ms"] = ms
                report["models"][f"{n}_{backbone}"][f"latency_{q}_p10_ms"] = p10
            _log(f"{backbone} {q} latency (ms): {med}")
        fp = report["models"][f"fasterpose_r8_{backbone}"]
        sb = report["models"][f"simple_baseline_{backbone}"]
        report["ratios"][backbone] = {
            "params": round(fp["params"] / sb["params"], 3),
            "macs": round(fp["macs"] / sb["macs"], 3),
            "hrnet_gflops": round(fp["hrnet_gflops"] / sb["hrnet_gflops"], 3),
            "latency_fp32": round(fp["latency_fp32_ms"] / sb["latency_fp32_ms"], 3),
            "latency_int8": round(fp["latency_int8_ms"] / sb["latency_int8_ms"], 3),
            "latency_fp32_p10": round(fp["latency_fp32_p10_ms"] / sb["latency_fp32_p10_ms"], 3),
            "latency_int8_p10": round(fp["latency_int8_p10_ms"] / sb["latency_int8_p10_ms"], 3),
        }
        report["ratios"][backbone]["latency_target_met"] = bool(
            max(report["ratios"][backbone]["latency_fp32"], report["ratios"][backbone]["latency_int8"]) <= 0.65)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    main()
