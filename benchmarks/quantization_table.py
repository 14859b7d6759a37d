"""Quantization table: size, latency and AP of fp32 / fp16 / dynamic / int8 / qat exports.

  python benchmarks/quantization_table.py --model_dir runs/quickstart \
      --val_images runs/synthetic/val --val_annotations runs/synthetic/annotations/person_keypoints_val.json

Each mode is exported with ``keras_pose.export.tflite`` (int8/qat calibrated on
``--calibration_images`` training-style images), then every validation image goes through
the ``TFLiteRunner``: network and decode milliseconds (median), and COCO keypoint AP via
``keras_pose.evaluation.coco_eval``. Prints ONE JSON object to stdout (logs go to stderr).
"""
import argparse
import json
import pathlib
import sys
import tempfile

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # run from a checkout

from benchmarks._harness import time_rounds  # noqa: E402

MODES = ("fp32", "fp16", "dynamic", "int8", "qat")


def evaluate_modes(paths: dict, val_images, ann_path, num_threads=2, repeats=1) -> dict:
    """Run every exported model on the val images: latency medians (ms) and AP per mode.

    Modes are timed round-robin on each image (fp32, int8, ... then the next image), so
    load swings on a shared CPU hit all modes alike and their ratios stay meaningful.
    """
    from keras_pose.evaluation.coco_eval import evaluate_keypoints
    from keras_pose.inference.tflite_runner import TFLiteRunner, read_image
    runners = {m: TFLiteRunner(p, num_threads=num_threads) for m, p in paths.items()}
    times = {m: {} for m in paths}  # stage -> ms per call (the predictor's last_timing)
    results = {m: [] for m in paths}

    def collect(m, _):
        for k, v in runners[m].last_timing.items():
            times[m].setdefault(k, []).append(v * 1e3)

    for image_id, path in val_images:
        img = read_image(path)
        for m, r in runners.items():
            # The untimed first pass gives the AP results and warms the interpreter up.
            results[m] += r.predict(img).to_coco(image_id)
        time_rounds({m: (lambda r=r: r.predict(img)) for m, r in runners.items()},
                    runs=repeats, warmup=0, on_call=collect)
    ids = [i for i, _ in val_images]
    out = {}
    for m in paths:
        ap = evaluate_keypoints(results[m], ann_path, image_ids=ids)
        row = {f"{k}_ms_median": float(np.median(v)) for k, v in times[m].items()}
        row.update({"AP": ap["AP"], "AP50": ap["AP50"], "AR": ap["AR"],
                    "persons_detected": len(results[m])})
        out[m] = row
    return out


def val_split(images_dir, ann_path, max_images):
    d = json.loads(pathlib.Path(ann_path).read_text())
    imgs = sorted(d["images"], key=lambda r: r["id"])[:max_images]
    return [(int(r["id"]), pathlib.Path(images_dir) / r["file_name"]) for r in imgs]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model_dir", required=True, help="training output (model.keras, config.json)")
    ap.add_argument("--val_images", required=True)
    ap.add_argument("--val_annotations", required=True)
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--max_images", type=int, default=100)
    ap.add_argument("--calibration_source", default="synthetic",
                    help="'synthetic' or a folder of images (not the val split)")
    ap.add_argument("--calibration_images", type=int, default=32)
    ap.add_argument("--qat_steps", type=int, default=100)
    ap.add_argument("--qat_epochs", type=int, default=1)
    ap.add_argument("--num_threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=1, help="timed runs per val image")
    ap.add_argument("--output_dir", default=None, help="keep the exports here (default: temp)")
    ap.add_argument("--reuse_exports", action="store_true",
                    help="skip modes already exported under --output_dir")
    a = ap.parse_args(argv)
    modes = [m.strip() for m in a.modes.split(",") if m.strip()]
    bad = sorted(set(modes) - set(MODES))
    if bad:
        ap.error(f"--modes: unknown {bad}; choose from {MODES}")

    from keras_pose.export import tflite as export_lib
    model, config = export_lib.load_keras_model(model_dir=a.model_dir)
    from keras_pose.train.config import read_descriptor
    em = export_lib.build_export_model(model, read_descriptor(config))
    hw = tuple(int(v) for v in em.inputs[0].shape[1:3])
    cal = export_lib.calibration_images(a.calibration_source, a.calibration_images, hw, seed=1)
    val = val_split(a.val_images, a.val_annotations, a.max_images)
    root = pathlib.Path(a.output_dir or tempfile.mkdtemp(prefix="kp_qtable_"))
    table, paths = {}, {}
    for mode in modes:
        tfl = root / mode / "model.tflite"
        try:
            if a.reuse_exports and tfl.is_file() and (root / mode / "model.json").is_file():
                side = json.loads((root / mode / "model.json").read_text())
            else:
                side = export_lib.export_tflite(
                    model, root / mode, mode, cal, config=config,
                    qat_kwargs={"steps": a.qat_steps, "epochs": a.qat_epochs},
                    log=lambda m: print(m, file=sys.stderr))
            table[mode] = {"size_bytes": side["size_bytes"],
                           "keras_max_abs_diff": side["validation"]["max_abs_diff"],
                           "keras_correlation": side["validation"].get("correlation")}
            paths[mode] = tfl
        except Exception as e:  # noqa: BLE001 - one failing mode must not hide the others
            table[mode] = {"error": f"{type(e).__name__}: "
                                    f"{str(e).splitlines()[0] if str(e) else ''}"}
        print(f"{mode}: {json.dumps(table[mode])}", file=sys.stderr)
    for mode, row in evaluate_modes(paths, val, a.val_annotations, a.num_threads,
                                    a.repeats).items():
        table[mode].update(row)
    res = {"model_dir": str(a.model_dir), "input_shape": [1, *hw, 3], "val_images": len(val),
           "num_threads": a.num_threads, "calibration_images": a.calibration_images,
           "exports": str(root), "modes": table}
    f = table.get("fp32", {})
    for mode, row in table.items():
        if mode != "fp32" and "AP" in row and "AP" in f:
            row["AP_minus_fp32"] = row["AP"] - f["AP"]
            row["network_speedup_vs_fp32"] = f["network_ms_median"] / row["network_ms_median"]
    print(json.dumps(res))


if __name__ == "__main__":
    main()
