r"""Convert the Simple Pose authors' PyTorch checkpoint into a keras_pose model folder.

  python export/convert_checkpoint.py --checkpoint PoseNet_52_epoch.pth --model_dir runs/paper
  python export/convert_checkpoint.py --checkpoint PoseNet_52_epoch.pth \
      --model_dir runs/paper_2s --keep_stacks 2 --input_size 384

Reads torch's zip or legacy format without PyTorch and without executing
anything from the file; infers the network (stacks, width, growth) from the
tensor shapes; checks every key is used once and every Keras weight is set.
The folder (model.keras + config.json) is read like a training run's by
training/evaluate.py, export/export_tflite.py and --init_from.
Thin absl wrapper over ``keras_pose.export.ibp_checkpoint``.
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402

F = flags.FLAGS
flags.DEFINE_string("checkpoint", None, "The authors' .pth file (e.g. PoseNet_52_epoch.pth).")
flags.DEFINE_string("model_dir", None, "Output folder (model.keras + config.json).")
flags.DEFINE_integer("input_size", 512, "Square input size of the saved model (a multiple of 64).")
flags.DEFINE_integer("keep_stacks", None, "Keep only the first k stacks (every stack is supervised).")
flags.mark_flags_as_required(["checkpoint", "model_dir"])


def main(argv):
    if len(argv) > 1:
        sys.exit(f"convert_checkpoint: unexpected arguments {' '.join(argv[1:])} "
                 "(flags are --name=value)")
    from keras_pose import checks

    try:  # what needs no TensorFlow first (it costs seconds to import)
        if F.input_size < 64 or F.input_size % 64:
            raise ValueError(f"--input_size {F.input_size} must be a positive multiple of 64")
        checks.check_input_file(F.checkpoint, "--checkpoint")
        checks.check_positive(F.keep_stacks, "--keep_stacks")
        checks.check_output_dir(F.model_dir, "--model_dir")
        checks.check_conversion_target(F.model_dir, "--model_dir")
    except ValueError as e:
        sys.exit(f"convert_checkpoint: {e}")
    from keras_pose.export import ibp_checkpoint as ibp

    try:
        model, cfg = ibp.convert_checkpoint(F.checkpoint, (F.input_size, F.input_size),
                                            F.keep_stacks)
        info = ibp.save_model_dir(model, cfg, F.model_dir, F.checkpoint, F.keep_stacks)
    except (ValueError, FileNotFoundError) as e:
        sys.exit(f"convert_checkpoint: {e}")
    print(json.dumps({"model_dir": F.model_dir, "stacks": cfg.stacks, "width": cfg.width,
                      "growth": cfg.growth, "input_size": list(cfg.input_size),
                      "params": info["params"], "preset": info["preset"]}))


if __name__ == "__main__":
    app.run(main)
