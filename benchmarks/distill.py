r"""Distillation proof on the synthetic quickstart set, and teacher/student step throughput.

The teacher is a trained quickstart run (``python training/train.py``). Students
start from scratch and see only the teacher's maps of the synthetic *training
images* (their annotations are not read); they get the quickstart's step
budget (28 x 100 steps of 8) and are scored, like the teacher, on the 100 val
images with flip + scales 1 and 1.5 (pycocotools AP).

  # 1. each student: the teacher in the step (exact), or its cache of maps
  #    (built by the first cache run, reused after)
  python benchmarks/distill.py --run student --name tiny_in_step_s1 --mode in_step
  python benchmarks/distill.py --run student --name tiny_cache_s1 --mode cache
  python benchmarks/distill.py --run student --name w16_in_step_s1 --mode in_step \
      --model '{"width": 16, "growth": 8, "feature_width": 16}'
  # 2. seconds per training step: teacher inside the step vs the cache
  python benchmarks/distill.py --run throughput --throughput_steps 20
  # 3. the table (docs/benchmarks.md)
  python benchmarks/distill.py --run report

Results: one JSON per part in --out_dir.
"""
import json
import os
import platform
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402

F = flags.FLAGS
flags.DEFINE_enum("run", "student", ["student", "throughput", "teacher", "report"], "Part.")
flags.DEFINE_string("teacher", "runs/quickstart", "Trained quickstart run folder (python training/train.py).")
flags.DEFINE_string("data_dir", "runs/synthetic", "Its synthetic dataset (the quickstart writes it there).")
flags.DEFINE_string("out_dir", "runs/distill_bench", "Runs, cache and result JSONs.")
flags.DEFINE_string("name", "tiny", "Student run name.")
flags.DEFINE_string("preset", "imhn_tiny", "Student preset.")
flags.DEFINE_string("model", None, "Student preset overrides (JSON).")
flags.DEFINE_enum("mode", "cache", ["cache", "in_step"], "Where the teacher runs.")
flags.DEFINE_enum("framing", "image", ["image", "teacher"], "Unlabeled framing (cache mode).")
flags.DEFINE_list("teacher_scales", ["1.0"], "The teacher's test scales (earlier runs: 1.0,1.5).")
flags.DEFINE_integer("epochs", 28, "Epochs (quickstart: 28).")
flags.DEFINE_integer("steps_per_epoch", 100, "Steps per epoch (quickstart: 100).")
flags.DEFINE_integer("batch_size", 8, "Batch (quickstart: 8).")
flags.DEFINE_integer("throughput_steps", 20, "Timed steps per mode (after one warm-up epoch).")


def _cpu() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        return next(l.split(":", 1)[1].strip() for l in out.splitlines() if "Model name" in l)
    except Exception:  # noqa: BLE001
        return platform.processor() or "unknown"


def _config(name, mode, **extra):
    from keras_pose.train.config import TrainConfig

    d = F.data_dir
    return TrainConfig(
        preset=F.preset, model=json.loads(F.model) if F.model else None,
        dataset="images", images_dir=os.path.join(d, "train"),
        val_annotations=os.path.join(d, "annotations", "person_keypoints_val.json"),
        val_images_dir=os.path.join(d, "val"),
        teacher=F.teacher, teacher_scales=tuple(float(x) for x in F.teacher_scales),
        teacher_flip=True,
        teacher_cache=os.path.join(F.out_dir, "cache") if mode == "cache" else None,
        unlabeled_framing=F.framing if mode == "cache" else "image",
        model_dir=os.path.join(F.out_dir, name), epochs=F.epochs,
        steps_per_epoch=F.steps_per_epoch, batch_size=F.batch_size, time_budget_s=0.0,
        eval_flip=True, eval_scales=(1.0, 1.5), export_int8=False, demo_image=False, **extra)


def _write(name, result):
    os.makedirs(F.out_dir, exist_ok=True)
    result.update(date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), cpu=_cpu(),
                  command=" ".join(sys.argv))
    path = os.path.join(F.out_dir, f"{name}.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(result, f, indent=2, default=str)
    print(json.dumps(result, indent=1, default=str)[:3000])
    return path


def run_student():
    from keras_pose.train import loop

    t0 = time.monotonic()
    out = loop.run(_config(F.name, F.mode), verbose=2)
    s, model = out["summary"], out["model"]
    steps = s["epochs_completed"] * s["steps_per_epoch"]
    _write(F.name, {"part": "student", "name": F.name, "preset": F.preset, "model": F.model,
                    "mode": F.mode, "framing": F.framing,
                    "teacher_scales": [float(x) for x in F.teacher_scales],
                    "params": int(model.count_params()), "steps": steps,
                    "batch_size": F.batch_size, "val_AP": s.get("val", {}).get("AP"),
                    "val": s.get("val"), "train_seconds": s["train_seconds"],
                    "wall_seconds": round(time.monotonic() - t0, 1),
                    "distillation": s.get("distillation")})


def run_teacher():
    from keras_pose.evaluation.bottom_up import evaluate_bottom_up
    from keras_pose.train.distill import Teacher

    t = Teacher(F.teacher)
    d = F.data_dir
    _, stats = evaluate_bottom_up(t.model, t.codec,
                                  os.path.join(d, "annotations", "person_keypoints_val.json"),
                                  os.path.join(d, "val"), scales=(1.0, 1.5), flip=True,
                                  output=t.descriptor)
    _write("teacher", {"part": "teacher", "path": F.teacher, "params": int(t.model.count_params()),
                       "val_AP": stats["AP"], "val": stats})


def run_throughput():
    """Seconds per step of the same student with the teacher in the step or in the cache.

    ``loop.setup`` builds the run's own model, optimizer and pipeline; one
    epoch of ``throughput_steps`` warms up (traces), the second is timed.
    """
    import keras

    from keras_pose.train import loop

    class Timer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.t = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.last = time.perf_counter() - self.t

    n = F.throughput_steps
    result = {"part": "throughput", "batch_size": F.batch_size, "steps": n,
              "student": F.preset, "model": F.model}
    for mode in ("cache", "in_step"):
        s = loop.setup(_config(f"throughput_{mode}", mode))
        timer = Timer()
        s.model.fit(s.train_ds, epochs=2, steps_per_epoch=n, callbacks=[timer], verbose=0)
        result[mode] = {"seconds_per_step": round(timer.last / n, 3),
                        "images_per_second": round(F.batch_size * n / timer.last, 1)}
        if mode == "cache":
            result["cache_build"] = s.distill.cache_info
        print(mode, result[mode], flush=True)
    # The cache mode's step is the plain student step; the ratio is the teacher's cost.
    result["in_step_over_cache"] = round(result["in_step"]["seconds_per_step"] /
                                         result["cache"]["seconds_per_step"], 2)
    _write("throughput", result)


def run_report():
    rows = {}
    for name in sorted(os.listdir(F.out_dir)):
        if name.endswith(".json"):
            with open(os.path.join(F.out_dir, name), encoding="utf-8") as f:
                rows[name[:-5]] = json.load(f)
    teacher = rows.get("teacher", {}).get("val_AP")
    for name, r in rows.items():
        if r.get("part") == "student":
            ratio = f"{r['val_AP'] / teacher:.2f}" if teacher and r.get("val_AP") else "-"
            print(f"| {name} | {r['preset']} {r.get('model') or ''} | {r['params']:,} | "
                  f"{r['mode']} | {r['steps']} | {r['val_AP']:.3f} | {ratio} | "
                  f"{r['train_seconds']:.0f} s |")
    if teacher:
        print(f"teacher val AP {teacher:.3f} ({rows['teacher']['params']:,} params)")
    if "throughput" in rows:
        print(json.dumps(rows["throughput"], indent=1))


def main(argv):
    del argv
    {"student": run_student, "teacher": run_teacher, "throughput": run_throughput,
     "report": run_report}[F.run]()


if __name__ == "__main__":
    app.run(main)
