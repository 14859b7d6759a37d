"""Quantization table: size, latency and AP of fp32 / fp16 / dynamic / int8 / qat exports.

  python benchmarks/quantization_table.py --model_dir runs/quickstart \
      --val_images runs/synthetic/val --val_annotations runs/synthetic/annotations/person_keypoints_val.json

Each mode is exported with ``keras_pose.export_lib`` (int8/qat calibrated on
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

MODES = ("fp32", "fp16", "dynamic", "int8", "qat")


def evaluate_mode(tflite_path, val_images, ann_path, num_threads=2, repeats=1):
    """Run the exported model on the val images: latency medians (ms) and AP."""
    from keras_pose.evaluation.coco_eval import evaluate_keypoints
    from keras_pose.inference.tflite_runner import TFLiteRunner, read_image
    runner = TFLiteRunner(tflite_path, num_threads=num_threads)
    times = {"preprocess": [], "network": [], "decode": []}
    results = []
    for image_id, path in val_images:
        img = read_image(path)
        runner.predict(img)  # warm-up: first invocations allocate
        for _ in range(repeats):
            poses = runner.predict(img)
            for k, v in runner.last_timing.items():
                times[k].append(v * 1e3)
        results += poses.to_coco(image_id)
    ap = evaluate_keypoints(results, ann_path, image_ids=[i for i, _ in val_images])
    out = {f"{k}_ms_median": float(np.median(v)) for k, v in times.items()}
    out.update({"AP": ap["AP"], "AP50": ap["AP50"], "AR": ap["AR"],
                "persons_detected": len(results)})
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
    a = ap.parse_args(argv)
    modes = [m.strip() for m in a.modes.split(",") if m.strip()]
    bad = sorted(set(modes) - set(MODES))
    if bad:
        ap.error(f"--modes: unknown {bad}; choose from {MODES}")

    from keras_pose import export_lib
    model, config = export_lib.load_keras_model(model_dir=a.model_dir)
    em = export_lib.build_export_model(model)
    hw = tuple(int(v) for v in em.inputs[0].shape[1:3])
    cal = export_lib.calibration_images(a.calibration_source, a.calibration_images, hw, seed=1)
    val = val_split(a.val_images, a.val_annotations, a.max_images)
    root = pathlib.Path(a.output_dir or tempfile.mkdtemp(prefix="kp_qtable_"))
    table = {}
    for mode in modes:
        try:
            side = export_lib.export_tflite(
                model, root / mode, mode, cal, config=config,
                qat_kwargs={"steps": a.qat_steps, "epochs": a.qat_epochs},
                log=lambda m: print(m, file=sys.stderr))
            row = {"size_bytes": side["size_bytes"],
                   "keras_max_abs_diff": side["validation"]["max_abs_diff"]}
            row.update(evaluate_mode(root / mode / "model.tflite", val, a.val_annotations,
                                     a.num_threads, a.repeats))
        except Exception as e:  # noqa: BLE001 - one failing mode must not hide the others
            row = {"error": f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"}
        table[mode] = row
        print(f"{mode}: {json.dumps(row)}", file=sys.stderr)
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
