"""The decoder's share of a phone-size bottom-up pipeline: imhn_mobile int8 + decode.

``imhn_mobile`` (untrained: its latency does not depend on the weights) is
exported full-integer int8 with ``keras_pose.export.tflite`` (calibrated on
synthetic scenes) and run through ``TFLiteRunner`` on one thread: letterbox
(preprocess) and network medians on synthetic images. An untrained network's
maps hold no persons, so the decode is timed on perfect maps of the same size
(64 x 64 x 50 at the 256 x 256 input; 1, 6 and 24 real COCO-sample poses,
``tests/_reference_decoder.jittered_scene``) with both assemblies
(``grouping="paper"`` / ``"matched"``, docs/grouping.md), interleaved.

Prints one JSON object: medians (ms) of preprocess, network and decode, and the
decoder's share of preprocess + network + decode per person count.

    nice -n 10 python benchmarks/decoder_share.py [--out /tmp/imhn_mobile_int8] [--repeats 30]
"""
import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import pathlib  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

SAMPLE = pathlib.Path(os.environ.get("KERAS_POSE_COCO_SAMPLE", REPO.parent / "shared" / "data" / "coco_sample"))


def export_mobile(out_dir) -> pathlib.Path:
    """imhn_mobile, untrained, int8 with synthetic calibration -> out_dir/model.tflite."""
    from keras_pose.descriptor import describe
    from keras_pose.export import tflite as export_lib
    from keras_pose.models import presets
    cfg = presets.get_preset("imhn_mobile")
    model = presets.build_model(cfg)
    cal = export_lib.calibration_images("synthetic", 8, cfg.input_size)
    export_lib.export_tflite(model, out_dir, "int8", cal, descriptor=describe(cfg, preset="imhn_mobile"),
                             log=lambda m: print(m, file=sys.stderr))
    return pathlib.Path(out_dir) / "model.tflite"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="/tmp/imhn_mobile_int8", help="export folder (reused if present)")
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--scenes", type=int, default=4)
    args = ap.parse_args()
    import cv2
    cv2.setNumThreads(1)
    path = pathlib.Path(args.out) / "model.tflite"
    if not path.exists():
        path = export_mobile(args.out)
    from _reference_decoder import jittered_scene, sample_poses
    from keras_pose.codecs import BodyPartsCodec
    from keras_pose.data.synthetic import make_scene
    from keras_pose.inference.tflite_runner import TFLiteRunner
    runner = TFLiteRunner(path, num_threads=1)
    rng = np.random.default_rng(0)
    images = [make_scene(rng, (256, 256))[0] for _ in range(4)]
    pre, net = [], []
    for r in range(args.repeats):
        for img in images:
            runner.predict(img)
            if r:
                pre.append(runner.last_timing["preprocess"])
                net.append(runner.last_timing["network"])
    out = {"model": "imhn_mobile int8 (untrained), 256x256, 1 thread",
           "load_average_start": os.getloadavg()[0],
           "preprocess_ms": round(1e3 * float(np.median(pre)), 2),
           "network_ms": round(1e3 * float(np.median(net)), 2), "decode": {}}
    poses = sample_poses(SAMPLE / "test_coco.json")
    codecs = {g: BodyPartsCodec(grouping=g) for g in ("paper", "matched")}
    for n in (1, 6, 24):
        maps = [codecs["paper"].encode(jittered_scene(rng, poses, n, size=(256, 256), height_range=(70, 150)),
                                       (256, 256))["heatmaps"] for _ in range(args.scenes)]
        times = {g: [] for g in codecs}
        for r in range(args.repeats // 2 + 1):
            for m in maps:
                for g, c in codecs.items():
                    t0 = time.perf_counter()
                    c.decode(m)
                    if r:
                        times[g].append(time.perf_counter() - t0)
        row = {}
        for g, t in times.items():
            d = 1e3 * float(np.median(t))
            row[g] = {"decode_ms": round(d, 2),
                      "share": round(d / (d + out["preprocess_ms"] + out["network_ms"]), 3)}
        out["decode"][f"persons_{n}"] = row
    out["load_average_end"] = os.getloadavg()[0]
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
