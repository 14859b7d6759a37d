r"""Evaluate a trained model with pycocotools (COCO keypoint AP/AR).

  # bottom-up, on the held-out synthetic split of a quickstart run
  python training/evaluate.py --model_dir runs/quickstart
  # bottom-up on COCO val2017, 2 scales + flip
  python training/evaluate.py --model_dir runs/imhn --images_dir coco/val2017 \
      --annotations coco/annotations/person_keypoints_val2017.json --scales 1,1.5 --flip
  # the same with the other person assembly (docs/grouping.md)
  python training/evaluate.py --model_dir runs/imhn ... --grouping paper
  # the Simple Pose authors' test protocol (5 scales at 512 + flip, fused at full resolution)
  python training/evaluate.py --model_dir runs/paper --protocol paper --images_dir coco/val2017 \
      --annotations coco/annotations/person_keypoints_val2017.json
  # top-down from detector boxes (or --boxes gt)
  python training/evaluate.py --model_dir runs/fp --task top_down \
      --images_dir coco/val2017 --annotations ... --boxes dets.json

Writes the COCO results JSON (--output, default <model_dir>/results.json) and
prints the AP/AR table, with the run's keypoint spec (its OKS sigmas; --keypoints
overrides). Annotation files whose images carry CrowdPose's crowdIndex also get
AP_easy / AP_medium / AP_hard. --max_images for quick checks.
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402

F = flags.FLAGS
flags.DEFINE_string("model_dir", None, "Training output folder (model.keras + config.json).")
flags.DEFINE_string("model", None, "A .keras file instead of --model_dir (its config.json "
                    "beside it, or --preset).")
flags.DEFINE_string("preset", None, "Preset of a --model without config.json.")
flags.DEFINE_enum("task", None, ["bottom_up", "top_down"], "Check: the model's task (its "
                  "descriptor says it).")
flags.DEFINE_string("keypoints", None, "Keypoint spec name or file (default: the one saved "
                    "in config.json; COCO for --model).")
flags.DEFINE_string("mpii_annotations", None, "Bottom-up: score PCKh@0.5 on MPII-format "
                    "annotations (docs/keypoints.md) with --images_dir, instead of OKS AP.")
flags.DEFINE_string("images_dir", None, "Images (default: the run's validation images).")
flags.DEFINE_string("annotations", None, "person_keypoints JSON (default: the run's val split).")
flags.DEFINE_string("boxes", "gt", "Top-down: 'gt' or a detections JSON (COCO results format).")
flags.DEFINE_float("box_score_threshold", 0.0, "Top-down: drop detections below this score.")
flags.DEFINE_list("scales", ["1"], "Bottom-up: multipliers of the input height.")
flags.DEFINE_integer("input_height", None, "Bottom-up letterbox height for models of any size.")
flags.DEFINE_boolean("flip", False, "Average with the mirrored image.")
flags.DEFINE_enum("grouping", None, ["paper", "matched"],
                  "Bottom-up person assembly (docs/grouping.md); default: the run's codec.")
flags.DEFINE_enum("protocol", "default", ["default", "paper"],
                  "Bottom-up test protocol: 'paper' = the authors' (input height 512, scales "
                  "0.5,1,1.5,2,3, flip, scales fused at full image resolution); --scales, "
                  "--flip and --input_height given explicitly override it.")
flags.DEFINE_integer("max_images", None, "Evaluate only the first N images.")
flags.DEFINE_string("output", None, "Results JSON path.")
flags.DEFINE_enum("bad_annotations", "skip", ["skip", "strict"],
                  "A bad image entry or annotation: skip it (counted and named) or refuse.")


def check_flags() -> None:
    """What can be checked without TensorFlow (it costs seconds to import): fail fast."""
    from keras_pose import checks

    checks.check_model_source(F.model, F.model_dir, need=("model.keras", "config.json"))
    checks.check_preset(F.preset)
    if F.keypoints:
        from keras_pose.skeleton import load_spec
        load_spec(F.keypoints)   # a bad name or spec file: one line, before TensorFlow
    checks.check_positive(F.max_images, "--max_images")
    checks.check_positive(F.input_height, "--input_height", minimum=32)
    try:
        scales = [float(s) for s in F.scales]
    except ValueError:
        raise ValueError(f"--scales {','.join(F.scales)}: not numbers") from None
    if not scales or min(scales) <= 0:
        raise ValueError(f"--scales {','.join(F.scales)}: must be positive numbers")
    for flag, path in (("--annotations", F.annotations), ("--images_dir", F.images_dir)):
        if path and not os.path.exists(path):
            raise ValueError(f"{flag} {path}: not found")
    if F.annotations:
        checks.check_input_file(F.annotations, "--annotations")
    if F.mpii_annotations:
        checks.check_input_file(F.mpii_annotations, "--mpii_annotations")
        if not F.images_dir:
            raise ValueError("--mpii_annotations needs --images_dir")
    if F.boxes != "gt":
        checks.check_input_file(F.boxes, "--boxes")
    if F.output:
        checks.check_output_file(F.output)


def main(argv):
    if len(argv) > 1:
        sys.exit(f"evaluate: unexpected arguments {' '.join(argv[1:])} (flags are --name=value)")
    try:
        check_flags()
        stats = run()
    except (ValueError, FileNotFoundError) as e:
        sys.exit(f"error: {e}")
    print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in stats.items()}))


def run() -> dict:
    import keras_pose
    from keras_pose.inference.predictor import protocol_options
    from keras_pose.train import loop as train_lib
    from keras_pose.train.config import TrainConfig, read_descriptor

    if not (F.model_dir or F.model):
        raise ValueError("give --model_dir or --model")
    path = F.model_dir or F.model
    run_dir = F.model_dir or os.path.dirname(os.path.abspath(F.model))
    config_path = os.path.join(run_dir, "config.json")
    if F.preset:  # a .keras file of a preset, without its run's config.json
        from keras_pose.descriptor import describe
        from keras_pose.models.presets import for_spec, get_preset
        from keras_pose.skeleton import load_spec
        spec = load_spec(F.keypoints)
        descriptor = describe(for_spec(get_preset(F.preset), spec), spec=spec, preset=F.preset)
    elif os.path.isfile(config_path):
        descriptor = read_descriptor(config_path)
        if F.keypoints:
            raise ValueError("--keypoints is for a --model with --preset: the run's "
                             "config.json names its keypoints")
    else:
        raise ValueError(f"{path}: no config.json beside the model; pass --preset")
    if F.task and F.task != descriptor.task:
        raise ValueError(f"--task {F.task}: the model is a {descriptor.task} model")
    spec = descriptor.spec
    if descriptor.task == "top_down":
        if F.mpii_annotations:
            raise ValueError("--mpii_annotations scores bottom-up models (top-down needs boxes)")
        options = dict(flip=F.flip)
    else:
        given = {"input_height": F.input_height,
                 "scales": tuple(float(s) for s in F.scales) if F["scales"].present else None,
                 "flip": F.flip if F["flip"].present else None, "grouping": F.grouping}
        protocol = "default" if F.mpii_annotations else F.protocol
        options = protocol_options(protocol, **given)
        options.setdefault("scales", tuple(float(s) for s in F.scales))
        options.setdefault("flip", F.flip)
    predictor = keras_pose.load(path, descriptor=descriptor, **options)
    if F.mpii_annotations:
        return _pckh(predictor)
    annotations, images_dir = F.annotations, F.images_dir
    if not (annotations and images_dir):
        if not os.path.isfile(config_path):
            raise ValueError("pass --annotations and --images_dir (no run config to take "
                             "its validation split from)")
        config = TrainConfig.load(config_path)
        paths = train_lib.prepare_data(config, descriptor.input_size, spec)
        annotations, images_dir = annotations or paths.val_annotations, images_dir or paths.val_images
    for p in (annotations, images_dir):
        if not p or not os.path.exists(p):
            raise FileNotFoundError(f"{p}: not found (pass --annotations and --images_dir)")
    # Validated once here (skip or strict), then evaluated from the clean dict.
    from keras_pose.data.coco import load_annotations
    annotations = load_annotations(annotations, F.bad_annotations, spec)
    output = F.output or os.path.join(F.model_dir or ".", "results.json")
    if descriptor.task == "top_down":
        from keras_pose.evaluation.coco_eval import print_stats
        from keras_pose.evaluation.topdown import evaluate_topdown

        results, stats = evaluate_topdown(predictor, predictor.codec, annotations, images_dir,
                                          boxes=F.boxes, score_threshold=F.box_score_threshold,
                                          max_images=F.max_images, results_path=output)
        print_stats(stats)
        return _with_crowd_index(stats, results, annotations, spec)
    from keras_pose.evaluation.bottom_up import evaluate_bottom_up

    results, stats = evaluate_bottom_up(predictor, predictor.codec, annotations, images_dir,
                                        max_images=F.max_images, results_path=output,
                                        print_table=True)
    return _with_crowd_index(stats, results, annotations, spec)


def _pckh(predictor) -> dict:
    """MPII's PCKh@0.5 of a bottom-up model on MPII-format annotations."""
    from keras_pose.evaluation.pckh import evaluate_predictor_pckh, format_pckh

    stats = evaluate_predictor_pckh(predictor, F.mpii_annotations, F.images_dir,
                                    max_images=F.max_images)
    print(format_pckh(stats))
    return {k: v for k, v in stats.items() if k != "per_joint"}


def _with_crowd_index(stats, results, annotations, spec):
    """CrowdPose-style files (images with crowdIndex): AP per easy / medium / hard group."""
    from keras_pose.evaluation.coco_eval import load_coco_gt
    from keras_pose.evaluation.crowd_index import evaluate_by_crowd_index

    gt = load_coco_gt(annotations)
    ids = sorted(gt.getImgIds())[:F.max_images] if F.max_images else None   # the images run
    stats.update(evaluate_by_crowd_index(results, gt, spec.sigmas, image_ids=ids))
    return stats


if __name__ == "__main__":
    app.run(main)
