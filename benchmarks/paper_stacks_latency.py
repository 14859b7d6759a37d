r"""Latency of the paper's IMHN truncated to its first k stacks, TFLite fp32 and int8.

  # 1. build and convert (slow: minutes per model; resumable, skips existing files)
  nice -n 10 python benchmarks/paper_stacks_latency.py --phase convert --sizes 384,512
  # 2. time every converted model, alternating between them, 2 threads
  nice -n 10 python benchmarks/paper_stacks_latency.py --phase time --runs 5

The network is the paper's (4 stacks, width 256, growth 128; Li et al., AAAI
2020, §3) with random weights of realistic magnitude: latency does not depend
on the values, and the authors' released weights (export/convert_checkpoint.py)
give the same graph. Stacks are supervised after each one, so the first k
stacks are a complete model: the k-stack export is the sub-graph up to stack
k-1's finest output. Timing is ``interpreter.invoke()`` alone (no pre- or
post-processing), models taken in turn so machine noise is shared. Prints JSON.
"""
import argparse
import json
import os
import pathlib
import sys
import time

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks._harness import feed_random, load_litert, randomise_weights, time_rounds  # noqa: E402


def _calibration(size, n):
    from keras_pose.export import tflite as export_lib

    sample = REPO.parent / "shared" / "data" / "coco_sample"
    src = str(sample) if sample.is_dir() else "synthetic"
    return export_lib.calibration_images(src, n, (size, size))


def convert_all(sizes, stacks, modes, out_dir, calibration_images, log):
    import keras

    from keras_pose.export import tflite as export_lib
    from keras_pose.models.configs import IMHNConfig
    from keras_pose.descriptor import describe
    from keras_pose.models.imhn import build_imhn

    for size in sizes:
        todo = [(k, m) for k in stacks for m in modes
                if not (out_dir / f"k{k}_{size}_{m}.tflite").is_file()]
        if not todo:
            continue
        t = time.time()
        full = build_imhn(IMHNConfig(stacks=max(stacks), input_size=(size, size)))
        randomise_weights(full)
        cal = _calibration(size, calibration_images) if "int8" in modes else None
        log(f"built {max(stacks)}-stack {size}: {full.count_params()} params, {time.time() - t:.0f} s")
        for k, mode in todo:
            t = time.time()
            desc = describe(IMHNConfig(stacks=k, input_size=(size, size)))
            em = export_lib.build_export_model(full, desc)
            data = export_lib.convert(em, mode, cal)
            path = out_dir / f"k{k}_{size}_{mode}.tflite"
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(data)
            os.replace(tmp, path)
            meta = {"stacks": k, "size": size, "quantize": mode, "params": em.count_params(),
                    "bytes": len(data), "convert_s": round(time.time() - t, 1)}
            path.with_suffix(".json").write_text(json.dumps(meta))
            log(json.dumps(meta))
            del em, data
        del full
        keras.backend.clear_session()


def time_all(out_dir, runs, num_threads, log):
    models = []
    for path in sorted(out_dir.glob("k*_*.tflite")):
        meta = json.loads(path.with_suffix(".json").read_text())
        interp, _ = load_litert(str(path), num_threads=num_threads)
        feed_random(interp)
        models.append((meta, interp, []))
        log(f"loaded {path.name}")
    calls = {i: interp.invoke for i, (_, interp, _) in enumerate(models)}
    for r in range(runs):
        # One warm-up invoke each before the first round (XNNPACK packs weights then).
        for i, ms in time_rounds(calls, runs=1, warmup=1 if r == 0 else 0).items():
            models[i][2].extend(ms)
        log(f"round {r + 1}/{runs} done")
    return [{**meta, "median_ms": round(float(np.median(ts)), 1),
             "min_ms": round(float(np.min(ts)), 1), "runs": len(ts)} for meta, _, ts in models]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--phase", choices=["convert", "time", "both"], default="both")
    ap.add_argument("--sizes", default="384,512")
    ap.add_argument("--stacks", default="1,2,3,4")
    ap.add_argument("--quantize", default="fp32,int8")
    ap.add_argument("--calibration_images", type=int, default=2)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--num_threads", type=int, default=2)
    ap.add_argument("--out_dir", default="runs/paper_stacks_latency")
    a = ap.parse_args(argv)
    out_dir = pathlib.Path(a.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    def log(msg):
        print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)

    if a.phase in ("convert", "both"):
        convert_all([int(s) for s in a.sizes.split(",")], [int(k) for k in a.stacks.split(",")],
                    a.quantize.split(","), out_dir, a.calibration_images, log)
    if a.phase in ("time", "both"):
        import platform
        res = time_all(out_dir, a.runs, a.num_threads, log)
        print(json.dumps({"date": time.strftime("%Y-%m-%d"), "num_threads": a.num_threads,
                          "machine": platform.processor() or platform.machine(),
                          "results": res}, indent=1))


if __name__ == "__main__":
    main()
