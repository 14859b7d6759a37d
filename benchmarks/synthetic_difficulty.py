"""Which synthetic difficulty knob costs a trained model most: one model, many val sets.

    python benchmarks/synthetic_difficulty.py --model_dir runs/quickstart \
        [--variants base,upright,front,one_figure] [--images 100] [--scales 1,1.5] [--flip]

Each variant is the ``--preset`` (default: the model's own training preset) with
a few knobs changed (``VARIANTS``); a val split of ``--images`` scenes is
generated per variant at the model's input size from the same seed, and the
model is evaluated on it as ``training/evaluate.py`` does (pycocotools AP). The
model is not retrained, so a variant's gain says what that knob costs the model
on the base mix, an upper bound on nothing. Prints ONE JSON object.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from keras_pose.data import synthetic  # noqa: E402  (no TensorFlow)

# In _figure.POSTURES order: stand, walk, run, arms_up, arms_out, wave,
# cross_legs, bend, sit, squat, kneel, lie.
UPRIGHT = (0.3, 0.3, 0.0, 0.1, 0.15, 0.15, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
CLEAN = {"clutter": 0, "background_noise": 0.0, "texture_prob": 0.0, "brightness": 0.0,
         "blur_prob": 0.0, "noise_std": 0.0}
VARIANTS = {
    "base": {},
    "upright": {"posture_weights": UPRIGHT},                       # no bending, sitting, lying
    "front": {"profile_prob": 0.0, "back_view_prob": 0.0},         # no side or back views
    "upright_front": {"posture_weights": UPRIGHT, "profile_prob": 0.0, "back_view_prob": 0.0},
    "no_overlap": {"overlap": 0.0, "truncation": 0.0},
    "clean": CLEAN,                                                # no clutter, noise or blur
    "one_figure": {"max_figures": 1},
    "two_figures": {"max_figures": 2},
    "smaller": {"min_height": 0.3, "max_height": 0.6},
    "no_tall": {"min_height": 0.4, "max_height": 0.7},
    "tall": {"min_height": 0.6},
    # the quickstart preset's mix before it turned mostly upright and camera-facing ("easy"'s)
    "earlier_mix": {k: getattr(synthetic.PRESETS["easy"], k)
                    for k in ("posture_weights", "profile_prob", "back_view_prob")},
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model_dir", required=True, help="a training run's --model_dir")
    p.add_argument("--preset", default=None, help="base synthetic preset (default: the run's)")
    p.add_argument("--variants", default=",".join(VARIANTS),
                   help=f"comma-separated, from {sorted(VARIANTS)}")
    p.add_argument("--images", type=int, default=100)
    p.add_argument("--scales", default="1,1.5")
    p.add_argument("--flip", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--seed", type=int, default=0, help="val scenes' seed (the quickstart's: 0)")
    args = p.parse_args()
    names = [v for v in args.variants.split(",") if v]
    unknown = [v for v in names if v not in VARIANTS]
    if unknown:
        sys.exit(f"error: --variants: unknown {unknown}; choose from {sorted(VARIANTS)}")

    from keras_pose.evaluation.bottom_up import evaluate_bottom_up
    from keras_pose.export.tflite import load_keras_model

    try:
        model, config = load_keras_model(model_dir=args.model_dir)
    except ValueError as e:
        sys.exit(f"error: {e}")
    if "codec" not in config:
        sys.exit(f"error: {args.model_dir}/config.json: missing or without a codec (not a "
                 f"bottom-up training run)")
    from keras_pose.train.config import read_descriptor
    descriptor = read_descriptor(config)
    codec = descriptor.build_codec()
    preset = args.preset or config.get("synthetic_preset", "quickstart")
    base = synthetic.get_preset(preset)
    size = tuple(int(v) for v in model.input_shape[1:3])
    scales = tuple(float(s) for s in args.scales.split(","))
    out = {"benchmark": "synthetic_difficulty", "model_dir": args.model_dir,
           "preset": preset, "images": args.images,
           "scales": list(scales), "flip": args.flip, "results": []}
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            t0 = time.perf_counter()
            cfg = base.replace(**VARIANTS[name])
            paths = synthetic.generate_dataset(os.path.join(tmp, name), 0, args.images,
                                               seed=args.seed, image_size=size, config=cfg,
                                               progress=False)
            _, stats = evaluate_bottom_up(model, codec, paths["val_annotations"],
                                          paths["val_images"], scales=scales, flip=args.flip,
                                          progress=False, output=descriptor)
            row = {"variant": name, "changes": VARIANTS[name],
                   **{k: round(float(stats[k]), 3) for k in ("AP", "AP50", "AP75", "AR")},
                   "seconds": round(time.perf_counter() - t0, 1)}
            out["results"].append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
