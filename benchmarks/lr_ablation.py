"""Low-resolution ablation on the synthetic set: FasterPose r in {1, 2, 4, 8} and the
SimpleBaseline control, each trained with RCE and with MSE for the same small budget.

``docs/method_top_down.md`` §2.3 (the r sweep and MSE vs RCE are the recommended
ablations). Everything is small so it runs on a 2-core CPU: a MobileNetV2
(alpha 0.35, random init) backbone, 128x96 crops, ``--steps`` Adam steps of
``--batch`` crops from ``keras_pose.data.synthetic`` (preset "easy"), then AP on
the synthetic val split from GT boxes with the flip test
(``evaluation.topdown.evaluate_topdown``), plus PCK@0.1/0.2 of the crop height
on the same val crops (readable when the small budget leaves AP near 0).
Costs come from ``models.flops``.

RCE trains logits and evaluates their sigmoid; MSE trains a linear output
(head bias 0) and evaluates it as is. Absolute APs are low at this budget; the
comparison between rows is the point. Prints ONE JSON object to stdout.

    python benchmarks/lr_ablation.py [--steps 300] [--batch 16] [--out_dir /tmp/lr_ablation] \
        [--plot docs/lr_ablation.png]
    python benchmarks/lr_ablation.py --replot results.json --plot docs/lr_ablation.png
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

INPUT = (128, 96)


def _log(*a):
    print(*a, file=sys.stderr, flush=True)


def build(kind: str, r: int, loss: str, alpha: float):
    """(training model, evaluation model, cost dict)."""
    import keras
    from keras_pose.models.configs import FasterPoseConfig, SimpleBaselineConfig
    from keras_pose.models.fasterpose import build_fasterpose
    from keras_pose.models.flops import count_model
    from keras_pose.models.simple_baseline import build_simple_baseline

    if kind == "fasterpose":
        # MSE regresses a linear map in [0, 1]: start it at 0 (prior 0.5 -> bias 0).
        cfg = FasterPoseConfig(backbone="mobilenetv2", alpha=alpha, input_size=INPUT, upscale=r,
                               prior_prob=0.01 if loss == "rce" else 0.5)
        model = build_fasterpose(cfg)
    else:
        cfg = SimpleBaselineConfig(backbone="mobilenetv2", alpha=alpha, input_size=INPUT,
                                   num_deconv=3, deconv_filters=64)
        model = build_simple_baseline(cfg)
    eval_model = model
    if loss == "rce":
        prob = keras.layers.Activation("sigmoid", dtype="float32")(model.outputs[0])
        eval_model = keras.Model(model.inputs[0], prob)
    c = count_model(model)
    return model, eval_model, {k: c[k] for k in ("params", "macs", "hrnet_gflops")}


def crop_pck(eval_model, codec, source, batch: int = 32):
    """PCK on the val persons' GT-box crops: fraction of labelled joints decoded within
    0.1 and 0.2 of the crop height, and the mean error in heatmap pixels. More
    informative than OKS AP when a small budget leaves AP near 0."""
    import numpy as np
    from keras_pose.data.topdown_pipeline import TopDownLoader

    loader = TopDownLoader(source, codec, augment=False)
    H = codec.input_size[0]
    errs = []
    for start in range(0, len(loader), batch):
        items = [loader.load(0, i) for i in range(start, min(start + batch, len(loader)))]
        crops = np.stack([it[1] for it in items])
        maps = np.asarray(eval_model.predict_on_batch(crops))
        pred = codec.decode(maps)
        for (_, _, targets, _), p in zip(items, pred):
            gt = codec.decode(targets[..., :codec.num_keypoints])    # exact GT in crop pixels
            w = targets[0, 0, codec.num_keypoints:] > 0
            errs.append(np.linalg.norm(p[:, :2] - gt[:, :2], axis=1)[w])
    e = np.concatenate(errs) / H
    return {"pck@0.1": round(float(np.mean(e < 0.1)), 4), "pck@0.2": round(float(np.mean(e < 0.2)), 4),
            "mean_err_hm_px": round(float(np.mean(e) * H / codec.stride), 3), "joints": int(e.size)}


def plot(result: dict, path: str, metric: str = "pck@0.2") -> None:
    """PNG of ``metric`` against true GMACs (log axis), one line per loss, drawn with OpenCV.

    ``result``: this script's JSON object. Points are labelled r = 1..8 or "SB" (the
    SimpleBaseline control); each loss has its own colour."""
    import math

    import cv2
    import numpy as np

    W, H, L, R, T, B = 720, 440, 70, 150, 40, 60
    img = np.full((H, W, 3), 255, np.uint8)
    rows = result["results"]
    gmacs = [r["macs"] / 1e9 for r in rows]
    lo, hi = math.log10(min(gmacs)) - 0.1, math.log10(max(gmacs)) + 0.1
    px = lambda g: int(L + (math.log10(g) - lo) / (hi - lo) * (W - L - R))
    py = lambda v: int(H - B - v * (H - T - B))
    font, grey = cv2.FONT_HERSHEY_SIMPLEX, (160, 160, 160)
    cv2.rectangle(img, (L, T), (W - R, H - B), (0, 0, 0), 1)
    for v in np.linspace(0, 1, 6):
        cv2.line(img, (L, py(v)), (W - R, py(v)), (230, 230, 230), 1)
        cv2.putText(img, f"{v:.1f}", (L - 40, py(v) + 5), font, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    ticks = [m * 10.0 ** e for e in range(math.floor(lo), math.ceil(hi) + 1) for m in (1, 2, 5)]
    for g in (t for t in ticks if lo <= math.log10(t) <= hi):
        cv2.line(img, (px(g), H - B), (px(g), H - B + 5), (0, 0, 0), 1)
        cv2.putText(img, f"{g:.2g}", (px(g) - 14, H - B + 22), font, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(img, "true GMACs (log)", (L + 180, H - 12), font, 0.55, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(img, f"{metric} on val crops, {result['steps']} steps, {result['backbone']}",
                (L, T - 14), font, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    colours = [(200, 80, 20), (20, 120, 230), (40, 160, 40), (150, 40, 150)]   # BGR
    for i, loss in enumerate(dict.fromkeys(r["loss"] for r in rows)):
        c = colours[i % len(colours)]
        pts = sorted((r["macs"] / 1e9, r[metric], "SB" if r["r"] is None else f"r={r['r']}")
                     for r in rows if r["loss"] == loss)
        fp = [(px(g), py(v)) for g, v, lab in pts if lab != "SB"]
        for a, b in zip(fp, fp[1:]):
            cv2.line(img, a, b, c, 2, cv2.LINE_AA)
        for g, v, lab in pts:
            cv2.circle(img, (px(g), py(v)), 5, c, -1, cv2.LINE_AA)
            cv2.putText(img, lab, (px(g) + 7, py(v) - 7), font, 0.42, c, 1, cv2.LINE_AA)
        cv2.line(img, (W - R + 15, T + 20 + 22 * i), (W - R + 40, T + 20 + 22 * i), c, 2)
        cv2.putText(img, loss.upper(), (W - R + 46, T + 25 + 22 * i), font, 0.5, c, 1, cv2.LINE_AA)
    cv2.putText(img, "SB = SimpleBaseline", (W - R + 10, T + 30 + 22 * 3), font, 0.4, grey, 1,
                cv2.LINE_AA)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    if not cv2.imwrite(path, img):
        raise SystemExit(f"lr_ablation: cannot write the plot to {path}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--num_train", type=int, default=120, help="synthetic training images")
    ap.add_argument("--num_val", type=int, default=30)
    ap.add_argument("--alpha", type=float, default=0.35)
    ap.add_argument("--rs", default="1,2,4,8")
    ap.add_argument("--losses", default="rce,mse")
    ap.add_argument("--out_dir", default=None, help="where the synthetic set goes (default: a temp dir)")
    ap.add_argument("--plot", default=None, help="also draw PCK@0.2 vs GMACs into this PNG")
    ap.add_argument("--replot", default=None, help="draw --plot from this saved JSON; no training")
    args = ap.parse_args(argv)
    if args.replot:
        if not args.plot:
            raise SystemExit("lr_ablation: --replot needs --plot PATH")
        try:
            with open(args.replot) as f:
                plot(json.load(f), args.plot)
        except (OSError, ValueError, KeyError) as e:
            raise SystemExit(f"lr_ablation: {args.replot}: not this script's JSON ({e})")
        return

    import keras
    from keras_pose.codecs import HeatmapCodec
    from keras_pose.data import synthetic
    from keras_pose.data.coco import CocoKeypoints
    from keras_pose.data.topdown_pipeline import topdown_dataset
    from keras_pose.evaluation.topdown import evaluate_topdown
    from keras_pose.losses import HeatmapMSELoss, RCELoss

    root = args.out_dir or tempfile.mkdtemp(prefix="lr_ablation_")
    paths = synthetic.generate_dataset(root, args.num_train, args.num_val, seed=0,
                                       image_size=(192, 192), config="easy", progress=False)
    train = CocoKeypoints(paths["train_annotations"], paths["train_images"])
    val = CocoKeypoints(paths["val_annotations"], paths["val_images"])
    runs = [("fasterpose", int(r)) for r in args.rs.split(",")] + [("simple_baseline", 8)]
    rows = []
    for kind, r in runs:
        for loss in args.losses.split(","):
            keras.utils.set_random_seed(0)
            model, eval_model, cost = build(kind, r, loss, args.alpha)
            hm = tuple(int(d) for d in model.outputs[0].shape[1:3])
            codec = HeatmapCodec(input_size=INPUT, heatmap_size=hm)
            ds = topdown_dataset(train, codec, args.batch, training=True, seed=0)
            model.compile(optimizer=keras.optimizers.Adam(1e-3),
                          loss=RCELoss() if loss == "rce" else HeatmapMSELoss(), jit_compile=False)
            t0 = time.perf_counter()
            hist = model.fit(ds, steps_per_epoch=args.steps, epochs=1, verbose=0)
            train_s = time.perf_counter() - t0
            _, stats = evaluate_topdown(eval_model, codec, paths["val_annotations"], paths["val_images"],
                                        boxes="gt", batch_size=32, flip=True, progress=False)
            row = {"model": kind, "r": r if kind == "fasterpose" else None, "loss": loss,
                   "heatmap": list(hm), **cost, "final_loss": round(float(hist.history["loss"][-1]), 5),
                   "AP": round(stats["AP"], 4), "AP50": round(stats["AP50"], 4),
                   **crop_pck(eval_model, codec, val), "train_s": round(train_s, 1)}
            _log(json.dumps(row))
            rows.append(row)
            keras.backend.clear_session()
    result = {"input_size": list(INPUT), "backbone": f"mobilenetv2 alpha {args.alpha} (random init)",
              "steps": args.steps, "batch": args.batch, "data": "synthetic easy",
              "num_train_images": args.num_train, "num_val_images": args.num_val, "results": rows}
    if args.plot:
        plot(result, args.plot)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    main()
