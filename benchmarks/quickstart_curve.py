"""AP curve of the README quickstart (``python training/train.py`` with no flags).

Runs the quickstart's resolved ``TrainConfig`` (imhn_tiny at 128x128 on the
synthetic ``quickstart`` set, Adam with one LR drop at 75%, L2) with an
AP evaluation on the 100-image synthetic val split every ``--eval_every``
epochs, and prints ONE JSON object: per evaluation the epoch, steps, seconds of
training so far (wall and process CPU, evaluation time excluded) and AP / AP50 /
AR, plus the final AP table. Pass ``--time_budget_s 0`` to train the full
planned schedule on a loaded machine (the default keeps the quickstart's safety
budget, which on a shared CPU stops training early).

    python benchmarks/quickstart_curve.py [--eval_every 3] [--time_budget_s 0] \
        [--model_dir /tmp/qs_curve] [--data_dir /tmp/qs_data] [--override key=value ...]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

KEYS = ("AP", "AP50", "AP75", "AR")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--eval_every", type=int, default=3)
    p.add_argument("--time_budget_s", type=float, default=None,
                   help="training budget (default: the quickstart's)")
    p.add_argument("--model_dir", default="/tmp/keras_pose_quickstart_curve")
    p.add_argument("--data_dir", default="/tmp/keras_pose_quickstart_data")
    p.add_argument("--override", action="append", default=[], help="TrainConfig key=value")
    args = p.parse_args()

    from keras_pose.train import loop as train_lib, tasks
    from keras_pose.train.config import TrainConfig, apply_overrides

    if os.path.exists(os.path.join(args.model_dir, "backup")):
        sys.exit(f"error: {args.model_dir} holds an unfinished run; pass a fresh --model_dir")
    cfg = TrainConfig(model_dir=args.model_dir, data_dir=args.data_dir,
                      eval_every=args.eval_every, export_int8=False, demo_image=False)
    if args.time_budget_s is not None:
        cfg = cfg.replace(time_budget_s=args.time_budget_s)
    cfg = apply_overrides(cfg, args.override)

    # Time the evaluations so the curve reports training time only: wrap the
    # task's evaluator (train_lib builds it from the task class).
    marks = {"eval_s": 0.0, "points": []}
    t_start = {"wall": None, "cpu": None}
    original = tasks.BottomUpTask.evaluator

    def timed_evaluator(self, annotations, images_dir, config):
        evaluate = original(self, annotations, images_dir, config)

        def run(model, verbose=False):
            w0, c0 = time.monotonic(), time.process_time()
            stats = evaluate(model, verbose)
            w1, c1 = time.monotonic(), time.process_time()
            if t_start["wall"] is not None:
                marks["points"].append({
                    "train_wall_s": round(w0 - t_start["wall"] - marks["eval_s"], 1),
                    "train_cpu_s": round(c0 - t_start["cpu"] - marks.get("eval_cpu", 0.0), 1),
                    "eval_wall_s": round(w1 - w0, 1),
                    **{k: round(float(stats.get(k, float("nan"))), 4) for k in KEYS}})
            marks["eval_s"] += w1 - w0
            marks["eval_cpu"] = marks.get("eval_cpu", 0.0) + c1 - c0
            return stats
        return run

    tasks.BottomUpTask.evaluator = timed_evaluator
    import keras

    class Start(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            t_start["wall"], t_start["cpu"] = time.monotonic(), time.process_time()

    fit = keras.Model.fit

    def fit_with_start(self, *a, **kw):
        kw["callbacks"] = [Start()] + list(kw.get("callbacks") or [])
        return fit(self, *a, **kw)
    keras.Model.fit = fit_with_start

    result = train_lib.run(cfg, verbose=0)
    summary = result["summary"]
    resolved = TrainConfig.load(os.path.join(args.model_dir, "config.json"))
    steps = summary["steps_per_epoch"]
    curve = []
    # eval_history holds the periodic evaluations; the final one is summary["val"].
    epochs = [h["epoch"] for h in summary["eval_history"]] + [summary["epochs_completed"]]
    for epoch, point in zip(epochs, marks["points"]):
        curve.append({"epoch": epoch, "steps": epoch * steps, **point})
    n_steps = summary["epochs_completed"] * steps
    train_wall = summary["train_seconds"] - marks["eval_s"] + (curve[-1]["eval_wall_s"] if curve else 0)
    out = {
        "config": {k: getattr(resolved, k) for k in (
            "preset", "synthetic_preset", "synthetic_train_images", "synthetic_val_images",
            "epochs", "steps_per_epoch", "batch_size", "time_budget_s", "optimizer", "lr",
            "lr_boundaries", "loss", "augment")},
        "codec": {k: resolved.codec["config"].get(k) for k in (
            "sigma", "limb_sigma", "peak_threshold", "limb_sample_threshold", "min_mean_score")}
        if resolved.codec and "config" in resolved.codec else resolved.codec,
        "steps_trained": n_steps,
        "stopped_by_time_budget": summary["stopped_by_time_budget"],
        "train_wall_s_excl_eval": round(train_wall, 1),
        "curve": curve,
        "final": {k: round(float(summary.get("val", {}).get(k, float("nan"))), 4)
                  for k in ("AP", "AP50", "AP75", "APm", "APl", "AR")},
    }
    print(json.dumps(out, default=str))


if __name__ == "__main__":
    main()
