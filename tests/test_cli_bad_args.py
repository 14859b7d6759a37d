"""Every script, given bad arguments: non-zero exit, no traceback, a one-line message.

The scripts run with a ``tensorflow`` and a ``keras`` that refuse to import
(tests/_no_tf/): the checks below must all happen before TensorFlow is imported
(issue: "fail fast"), so each case costs about a second, not ten.
"""
import os
import pathlib
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
SCRIPTS = {
    "train": REPO / "training" / "train.py",
    "evaluate": REPO / "training" / "evaluate.py",
    "export": REPO / "export" / "export_tflite.py",
    "benchmark": REPO / "export" / "benchmark_tflite.py",
    "demo": REPO / "mobile_demo" / "demo.py",
    "convert": REPO / "export" / "convert_checkpoint.py",
}
BLOCKER = "raise ImportError('imported on a fail-fast path: {}')\n"


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """A PYTHONPATH whose tensorflow and keras fail on import, and a work folder."""
    root = tmp_path_factory.mktemp("cli")
    for mod in ("tensorflow", "keras"):
        (root / "no_tf" / mod).mkdir(parents=True)
        (root / "no_tf" / mod / "__init__.py").write_text(BLOCKER.format(mod))
    (root / "empty_dir").mkdir()
    (root / "a_file").write_text("not a folder")
    (root / "model.keras").write_bytes(b"PK not really a model")
    (root / "config.json").write_text("{}")  # export wants the run's config beside --model
    (root / "lone").mkdir()
    (root / "lone" / "model.keras").write_bytes(b"PK not really a model")
    (root / "model.tflite").write_bytes(b"not really a model")
    (root / "ckpt.pth").write_bytes(b"not really a checkpoint")
    (root / "zero.tflite").write_bytes(b"")
    e = dict(os.environ, PYTHONPATH=f"{root / 'no_tf'}{os.pathsep}{REPO}")
    e.pop("TF_CONFIG", None)
    return root, e


# (script, arguments, text the message line must hold). {d} is the work folder.
CASES = [
    ("train", ["--preset=nope"], "'nope': unknown preset"),
    ("train", ["--epochs=0"], "epochs must be >= 1, got 0"),
    ("train", ["--batch_size=-4"], "batch_size must be >= 1, got -4"),
    ("train", ["--steps_per_epoch=0"], "steps_per_epoch must be >= 1"),
    ("train", ["--override=nope=1"], "override 'nope' is not a TrainConfig field"),
    ("train", ["--override=lr"], "is not of the form key=value"),
    ("train", ["--dataset=coco"], "dataset=coco needs --coco_dir"),
    ("train", ["--dataset=coco", "--coco_dir={d}/nowhere"],
     "person_keypoints_train2017.json: not found"),
    ("train", ["--task=top_down", "--loss=l2", "--preset=fasterpose_tiny"],
     "loss 'l2' is for the bottom-up"),
    ("train", ["--config_file={d}/a_file"], "a_file: cannot read a training config"),
    ("train", ["extra"], "unexpected arguments extra"),
    ("train", ["--model_dir="], "model_dir is empty"),
    ("train", ["--init_from={d}/none.keras"], "--init_from {d}/none.keras: not found"),
    ("evaluate", [], "give exactly one of --model"),
    ("evaluate", ["--model_dir={d}/nowhere"], "--model_dir {d}/nowhere: not found"),
    ("evaluate", ["--model_dir={d}/empty_dir"], "no model.keras or config.json (empty folder)"),
    ("evaluate", ["--model_dir={d}/a_file"], "is a file, expected a run folder"),
    ("evaluate", ["--model={d}/model.keras", "--preset=nope"], "'nope': unknown preset"),
    ("evaluate", ["--model={d}/model.keras", "--max_images=0"], "--max_images 0: must be >= 1"),
    ("evaluate", ["--model={d}/model.keras", "--scales=1,0"], "--scales 1,0: must be positive"),
    ("evaluate", ["--model={d}/model.keras", "--scales=a"], "--scales a: not numbers"),
    ("evaluate", ["--model={d}/model.keras", "--output={d}/empty_dir"], "is a folder; give a file"),
    ("evaluate", ["--model={d}/model.keras", "--annotations={d}/no.json"], "--annotations"),
    ("export", ["--model={d}/model.keras", "--output={d}/a_file"],
     "--output {d}/a_file: is a file"),
    ("export", ["--model_dir={d}/empty_dir", "--output={d}/out"],
     "no model.keras or config.json (empty folder)"),
    ("export", ["--model={d}/lone/model.keras", "--output={d}/out"], "no config.json beside it"),
    ("export", ["--model={d}/missing.keras", "--output={d}/out"],
     "--model {d}/missing.keras: not found"),
    ("export", ["--model={d}/model.keras", "--output={d}/out", "--calibration_images=0"],
     "--calibration_images 0: must be >= 1"),
    ("export", ["--model={d}/model.keras", "--output={d}/out", "--keep_stacks=0"],
     "--keep_stacks 0: must be >= 1"),
    ("export", ["--model={d}/model.keras", "--output={d}/out", "--input_size=64"],
     "--input_size 64: expected H,W"),
    ("export", ["--model={d}/model.keras", "--output={d}/out", "--calibration_source=images"],
     "--calibration_source images needs --calibration_dir"),
    ("export", ["--model={d}/model.keras", "--output={d}/out", "--calibration_source={d}/nowhere"],
     "calibration folder not found"),
    ("export", ["--model={d}/model.keras"], "--output"),
    ("export", ["--model={d}/model.keras", "--output={d}/out", "--io_dtype=uint8"],
     "--io_dtype uint8 needs --quantize int8 or qat"),
    ("benchmark", ["--model={d}/model.tflite", "--runs=0"], "--runs 0: must be >= 1"),
    ("benchmark", ["--model={d}/model.tflite", "--num_threads=0"], "--num_threads 0: must be >= 1"),
    ("benchmark", ["--model={d}/model.tflite", "--warmup=-1"], "--warmup -1: must be >= 0"),
    ("benchmark", ["--model={d}/missing.tflite"], "missing.tflite"),
    ("benchmark", ["--model={d}/zero.tflite"], "zero.tflite"),
    ("demo", ["--model={d}/model.tflite", "--input=x.png"], "give --output and/or --display"),
    ("demo", ["--model={d}/model.tflite", "--input=x.png", "--output=o.png", "--num_threads=0"],
     "--num_threads 0: must be >= 1"),
    ("demo", ["--model={d}/model.tflite", "--input=x.mp4", "--output=o.mp4", "--max_frames=0"],
     "--max_frames 0: must be >= 1"),
    ("demo", ["--model={d}/missing.tflite", "--input=x.png", "--output=o.png"], "missing.tflite"),
    ("convert", ["--checkpoint={d}/nowhere.pth", "--model_dir={d}/out"], "nowhere.pth: not found"),
    ("convert", ["--checkpoint={d}/ckpt.pth", "--model_dir={d}/a_file"],
     "--model_dir {d}/a_file: is a file"),
    ("convert", ["--checkpoint={d}/ckpt.pth", "--model_dir={d}/out", "--input_size=100"],
     "--input_size 100 must be a positive multiple of 64"),
    ("convert", ["--checkpoint={d}/ckpt.pth", "--model_dir={d}/out", "--keep_stacks=0"],
     "--keep_stacks 0: must be >= 1"),
]


@pytest.mark.parametrize("script, args, text", CASES,
                         ids=[f"{c[0]}-{'_'.join(c[1]) or 'none'}"[:60] for c in CASES])
def test_bad_arguments_fail_fast_in_one_line(env, script, args, text):
    root, e = env
    before = _snapshot(root)
    args = [a.format(d=root) for a in args]
    res = subprocess.run([sys.executable, str(SCRIPTS[script]), *args], capture_output=True,
                         text=True, cwd=root, env=e, timeout=120)
    err = res.stderr.strip()
    assert res.returncode != 0, (res.stdout, err)
    assert "Traceback" not in err and "imported on a fail-fast path" not in err, err[-3000:]
    lines = err.splitlines()
    # The message is one line; absl and argparse add their usage hint around their own errors.
    message = [ln for ln in lines if text.format(d=root) in ln]
    assert len(message) == 1, err
    assert len(lines) == 1 or lines[-1] == message[0] or \
        lines[-1].startswith("Pass --helpshort"), err
    assert _snapshot(root) == before  # nothing written, nothing changed (e.g. --output a_file)


def _snapshot(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() if p.is_file() else None
            for p in sorted(root.rglob("*")) if "no_tf" not in p.parts
            and "__pycache__" not in p.parts}


def test_preset_names_are_listed_without_tensorflow():
    code = ("import sys, keras_pose; names = keras_pose.list_presets(); "
            "assert 'imhn_tiny' in names and names == sorted(names), names; "
            "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules; "
            "print(len(names))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=dict(os.environ, PYTHONPATH=str(REPO)), timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]


def test_the_name_list_matches_the_preset_table():
    from keras_pose.checks import PRESET_NAMES
    from keras_pose.models import presets
    assert tuple(presets.list_presets()) == PRESET_NAMES
