"""Cost of the Keras predictor's test-time augmentation (Simple Pose §5.2).

A small untrained stacked IMHN runs through ``PosePredictor`` on the four real
COCO sample images, with (a) one scale, (b) one scale + flip, (c) three scales
(0.5, 1, 1.5) + flip, and (d) like (b) but the four images in one
``predict(list)`` call (inputs of equal padded size share a batch). Rounds are
interleaved so that machine noise hits all settings alike; the figures are
medians per image, split into the predictor's stages (``last_timing``), and
ratios to (a).

    python benchmarks/predictor_tta.py [--height 256] [--rounds 3] [--stacks 2 --width 32]

Prints one JSON object. The untrained model makes the decode time
unrepresentative (few or spurious peaks); network/preprocess/fuse are not.
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import statistics
import sys
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

DEFAULT_SAMPLE = REPO.parent / "shared" / "data" / "coco_sample"
STAGES = ("load", "preprocess", "network", "fuse", "decode")


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--height", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--stacks", type=int, default=2)
    ap.add_argument("--width", type=int, default=32)
    ap.add_argument("--order", type=int, default=4)
    ap.add_argument("--sample", default=str(DEFAULT_SAMPLE))
    args = ap.parse_args(argv)

    import keras

    from keras_pose.inference import PosePredictor
    from keras_pose.io import load_image
    from keras_pose.models.configs import IMHNConfig
    from keras_pose.models.imhn import build_imhn

    keras.utils.set_random_seed(0)
    size = 2 ** (args.order + 2)
    cfg = IMHNConfig(stacks=args.stacks, width=args.width, growth=args.width // 2,
                     order=args.order, input_size=(size, size),
                     feature_width=args.width, se_reduction=4)
    model = build_imhn(cfg)
    images = [load_image(p) for p in sorted(pathlib.Path(args.sample).glob("*.jpg"))]
    if not images:
        raise SystemExit(f"no .jpg images in {args.sample}")
    settings = {
        "single": dict(scales=(1.0,), flip=False),
        "flip": dict(scales=(1.0,), flip=True),
        "tta3_flip": dict(scales=(0.5, 1.0, 1.5), flip=True),
    }
    from keras_pose.descriptor import describe
    preds = {k: PosePredictor(model, input_height=args.height, output=describe(cfg), **v)
             for k, v in settings.items()}
    # Warm-up: trace predict for every input shape of every setting.
    for p in preds.values():
        p.predict(images)
        for im in images:
            p.predict(im)
    per_image = {k: {s: [] for s in STAGES + ("total",)} for k in list(preds) + ["flip_batched"]}
    for _ in range(args.rounds):
        for name, p in preds.items():
            for im in images:
                t0 = time.perf_counter()
                p.predict(im)
                per_image[name]["total"].append(time.perf_counter() - t0)
                for s in STAGES:
                    per_image[name][s].append(p.last_timing.get(s, 0.0))
        p = preds["flip"]
        t0 = time.perf_counter()
        p.predict(images)
        n = len(images)
        per_image["flip_batched"]["total"].append((time.perf_counter() - t0) / n)
        for s in STAGES:
            per_image["flip_batched"][s].append(p.last_timing.get(s, 0.0) / n)
    med = {k: {s: round(1000 * statistics.median(v), 2) for s, v in d.items()}
           for k, d in per_image.items()}
    base = med["single"]["total"]
    result = {
        "benchmark": "predictor_tta",
        "unit": "ms per image (median)",
        "model": {"stacks": cfg.stacks, "width": cfg.width, "order": cfg.order,
                  "params": int(model.count_params())},
        "input_height": args.height,
        "images": [list(im.shape[:2]) for im in images],
        "rounds": args.rounds,
        "per_image_ms": med,
        "ratio_to_single": {k: round(v["total"] / base, 2) for k, v in med.items()},
        "machine": {"python": platform.python_version(), "cpu_count": os.cpu_count(),
                    "keras": keras.__version__},
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
