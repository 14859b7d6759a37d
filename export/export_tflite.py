"""Export a trained keras_pose model to TFLite (+ model.json sidecar), validated against Keras.

  python export/export_tflite.py --model_dir runs/imhn_tiny --quantize int8 \
      --calibration_source images --calibration_dir my_photos --calibration_images 32 \
      --output exported/int8
  # the converted paper model, its first 2 stacks only, at 384x384
  python export/export_tflite.py --model_dir runs/paper --keep_stacks 2 --input_size 384,384 \
      --quantize fp16 --calibration_source images --calibration_dir my_photos --output exported/p2

Thin absl wrapper over ``keras_pose.export.tflite``.
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("model", None, "a .keras model file")
flags.DEFINE_string("model_dir", None, "a training output dir (model.keras + config.json)")
flags.DEFINE_enum("quantize", "fp32", ["fp32", "fp16", "dynamic", "int8", "qat"], "quantization")
flags.DEFINE_enum("io_dtype", None, ["uint8", "int8", "float32"],
                  "int8/qat input+output dtype (default uint8: raw pixels in)")
flags.DEFINE_integer("calibration_images", 16, "images for int8 calibration and validation")
flags.DEFINE_string("calibration_source", "synthetic",
                    "'images' (real photos from --calibration_dir), 'synthetic', or a folder")
flags.DEFINE_string("calibration_dir", None,
                    "with --calibration_source images: a folder of .jpg/.png photos")
flags.DEFINE_integer("keep_stacks", None, "stacked IMHN: export only the first k stacks")
flags.DEFINE_list("input_size", None, "H,W for models with a dynamic input size")
flags.DEFINE_integer("qat_epochs", 1, "QAT fine-tuning epochs (quantize=qat)")
flags.DEFINE_integer("qat_steps", 50, "QAT steps per epoch (quantize=qat)")
flags.DEFINE_string("output", None, "output dir for model.tflite and model.json")
flags.mark_flag_as_required("output")


def check_flags() -> None:
    """What can be checked without TensorFlow (it costs seconds to import): fail fast."""
    from keras_pose import checks

    checks.check_model_source(FLAGS.model, FLAGS.model_dir, need=("model.keras", "config.json"))
    if FLAGS.model and not os.path.isfile(os.path.join(os.path.dirname(FLAGS.model),
                                                       "config.json")):
        raise ValueError(f"--model {FLAGS.model}: no config.json beside it; export reads the "
                         "run's descriptor from there (give --model_dir of a training run)")
    checks.check_output_dir(FLAGS.output)
    for flag in ("calibration_images", "keep_stacks", "qat_epochs", "qat_steps"):
        checks.check_positive(FLAGS[flag].value, f"--{flag}")
    if FLAGS.input_size is not None:
        try:
            hw = [int(v) for v in FLAGS.input_size]
        except ValueError:
            hw = []
        if len(hw) != 2 or min(hw) < 1:
            raise ValueError(f"--input_size {','.join(FLAGS.input_size)}: expected H,W "
                             "(two positive integers)")
    if FLAGS.io_dtype not in (None, "float32") and FLAGS.quantize not in ("int8", "qat"):
        raise ValueError(f"--io_dtype {FLAGS.io_dtype} needs --quantize int8 or qat")
    source = FLAGS.calibration_source
    if source == "images":
        if not FLAGS.calibration_dir:
            raise ValueError("--calibration_source images needs --calibration_dir DIR")
        source = FLAGS.calibration_dir
    elif FLAGS.calibration_dir:
        raise ValueError("--calibration_dir is read with --calibration_source images")
    if source != "synthetic" and not os.path.isdir(source):
        raise ValueError(f"calibration folder not found: {source}")


def main(argv):
    if len(argv) > 1:
        sys.exit(f"export_tflite: unexpected arguments {' '.join(argv[1:])} "
                 "(flags are --name=value)")
    try:
        check_flags()
    except ValueError as e:
        sys.exit(f"export_tflite: {e}")
    from keras_pose.export import tflite as export_lib
    from keras_pose.train.config import read_descriptor
    try:
        model, config = export_lib.load_keras_model(FLAGS.model, FLAGS.model_dir)
        if not config:
            raise ValueError(f"{FLAGS.model}: no config.json beside it; export reads the run's "
                             "descriptor from there (give --model_dir of a training run)")
        descriptor = read_descriptor(config)
        if FLAGS.keep_stacks is not None:
            from keras_pose.models.configs import IMHNConfig
            from keras_pose.models.imhn import keep_stacks
            model = keep_stacks(model, FLAGS.keep_stacks)
            # The decoded output is now the last kept stack's finest map.
            descriptor = descriptor.replace(output={
                "layer": IMHNConfig.head_name(FLAGS.keep_stacks - 1, 0), "activation": None})
        source = FLAGS.calibration_dir if FLAGS.calibration_source == "images" \
            else FLAGS.calibration_source
        size = tuple(int(v) for v in FLAGS.input_size) if FLAGS.input_size else None
        em = export_lib.build_export_model(model, descriptor, size)
        hw = tuple(int(v) for v in em.inputs[0].shape[1:3])
        cal = export_lib.calibration_images(source, FLAGS.calibration_images, hw)
        side = export_lib.export_tflite(
            model, FLAGS.output, FLAGS.quantize, cal, FLAGS.io_dtype, config=config,
            descriptor=descriptor,
            input_size=size, qat_kwargs={"epochs": FLAGS.qat_epochs, "steps": FLAGS.qat_steps},
            log=lambda m: print(m, file=sys.stderr))
    except ValueError as e:
        sys.exit(f"export_tflite: {e}")
    print(json.dumps({"output": FLAGS.output, "quantize": FLAGS.quantize,
                      "size_bytes": side["size_bytes"], "validation": side["validation"]}))


if __name__ == "__main__":
    app.run(main)
