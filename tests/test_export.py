"""TFLite export: Keras vs TFLite parity per quantization mode, sidecar, CLI, QAT.

The model is a tiny IMHN (1 stack, order 1, width 16, 64x64) trained once per session for
80 steps on 8 synthetic scenes (tests/_tiny_pose_model.py), so its maps hold real peaks and
the decoder finds persons: the pose-parity checks compare non-empty results.
"""
import json
import pathlib
import shutil
import subprocess
import sys

import numpy as np
import pytest

import _tiny_pose_model as tiny

REPO = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def trained():
    return tiny.trained_export()


def _tflite_maps(path, images):
    from keras_pose.inference.tflite_runner import NetRunner
    net = NetRunner(str(path), num_threads=2)
    return np.stack([net.run(x) for x in images])


def _pose_pairs(ref_maps, test_maps):
    from keras_pose.codecs import BodyPartsCodec
    from keras_pose.export.tflite import match_persons
    codec = BodyPartsCodec()
    out = []
    for r, t in zip(ref_maps, test_maps):
        pr, pt = codec.decode(r), codec.decode(t)
        out.append((pr, pt, match_persons(pr, pt)))
    return out


def test_fp32_maps_and_poses_match_keras(trained):
    ref = trained["export_model"].predict(trained["images"], batch_size=1, verbose=0)
    got = _tflite_maps(trained["fp32"], trained["images"])
    assert ref.shape == got.shape == (len(trained["images"]), 16, 16, 50)
    assert np.abs(ref - got).max() < 1e-4
    pairs = _pose_pairs(ref, got)
    assert sum(len(pr) for pr, _, _ in pairs) > 0, "the trained model should find persons"
    for pr, pt, m in pairs:
        assert len(pr) == len(pt) == len(m)
        for i, j, _ in m:
            assert np.array_equal(pr.keypoints[i, :, 2] > 0, pt.keypoints[j, :, 2] > 0)
            found = pr.keypoints[i, :, 2] > 0
            d = np.linalg.norm(pr.keypoints[i, found, :2] - pt.keypoints[j, found, :2], axis=1)
            assert d.max() < 0.5


def test_sidecar_describes_the_export(trained):
    side = json.loads((trained["fp32"].parent / "model.json").read_text())
    from keras_pose.descriptor import RunDescriptor
    desc = RunDescriptor.from_dict(side["descriptor"])
    assert desc.task == "bottom_up" and side["quantize"] == "fp32"
    assert side["format"] == "keras_pose.tflite/2"
    assert side["input"]["shape"] == [1, 64, 64, 3] and side["input"]["dtype"] == "float32"
    assert desc.input_size == (64, 64) and desc.input["color"] == "RGB"
    assert side["outputs"][0]["shape"] == [1, 16, 16, 50]
    assert side["keras_output_names"] == ["s0_x0"] == [desc.output_layer]
    assert desc.codec["type"] == "BodyPartsCodec"
    assert desc.build_codec().config.stride == 4
    assert desc.spec.num_keypoints == 17
    v = side["validation"]
    assert v["max_abs_diff"] < 1e-4 and v["persons_keras"] == v["persons_tflite"] > 0


@pytest.mark.parametrize("mode", ["fp16", "dynamic"])
def test_fp16_and_dynamic_poses_within_1px(trained, tmp_path, mode):
    """Validation (Keras vs interpreter on the 8 training scenes) stored in the sidecar.

    A weakly trained model has marginal limb scores, so a tiny map change can flip one
    grouping decision; we require the median matched person within 1 px and >= 80% of them.
    """
    from keras_pose.export import tflite as export_lib
    side = export_lib.export_tflite(trained["model"], tmp_path, mode, trained["images"],
                                    log=lambda m: None, descriptor=trained["descriptor"])
    assert side["size_bytes"] < trained["fp32_sidecar"]["size_bytes"]
    v = side["validation"]
    assert v["max_abs_diff"] < (0.01 if mode == "fp16" else 0.05)
    d = np.asarray(v["matched_distances_px"])
    assert d.size > 0 and d.size == v["persons_matched"]
    assert np.median(d) < 1.0 and np.mean(d < 1.0) >= 0.8
    assert v["persons_matched"] >= 0.8 * max(v["persons_keras"], v["persons_tflite"])


def test_int8_export_runs_and_correlates(trained, tmp_path):
    from keras_pose.export import tflite as export_lib
    side = export_lib.export_tflite(trained["model"], tmp_path, "int8", trained["images"],
                                    log=lambda m: None, descriptor=trained["descriptor"])
    assert side["input"]["dtype"] == "uint8" and side["io_dtype"] == "uint8"
    assert side["input"]["quantization"]["scale"] > 0
    assert side["outputs"][0]["dtype"] == "uint8"
    assert side["validation"]["correlation"] > 0.95
    assert side["size_bytes"] < 0.75 * trained["fp32_sidecar"]["size_bytes"]


@pytest.mark.slow
def test_int8_float_io(trained, tmp_path):
    from keras_pose.export import tflite as export_lib
    side = export_lib.export_tflite(trained["model"], tmp_path, "int8", trained["images"][:4],
                                    io_dtype="float32", log=lambda m: None,
                                    descriptor=trained["descriptor"])
    assert side["input"]["dtype"] == "float32" and side["outputs"][0]["dtype"] == "float32"


def test_export_model_is_batch1_single_output(trained):
    em = trained["export_model"]
    assert tuple(em.inputs[0].shape) == (1, 64, 64, 3)
    assert len(em.outputs) == 1 and tuple(em.outputs[0].shape) == (1, 16, 16, 50)


def test_bad_arguments(trained, tmp_path):
    from keras_pose.export import tflite as export_lib
    with pytest.raises(ValueError, match="quantize"):
        export_lib.export_tflite(trained["model"], tmp_path, "int4", trained["images"])
    with pytest.raises(ValueError, match="io_dtype"):
        export_lib.export_tflite(trained["model"], tmp_path, "fp32", trained["images"],
                                 io_dtype="uint8")
    with pytest.raises(ValueError, match="run descriptor"):
        export_lib.export_tflite(trained["model"], tmp_path, "fp32", trained["images"])
    with pytest.raises(ValueError, match="model file not found"):
        export_lib.load_keras_model(tmp_path / "nope.keras")
    with pytest.raises(ValueError, match="calibration folder"):
        export_lib.calibration_images(tmp_path / "nothing", 2, (64, 64))


def test_calibration_from_folder_uses_letterbox(tmp_path):
    import cv2
    from keras_pose.export import tflite as export_lib
    img = np.zeros((30, 60, 3), np.uint8)
    img[..., 0] = 255  # pure red in RGB
    cv2.imwrite(str(tmp_path / "a.png"), img[..., ::-1])
    cal = export_lib.calibration_images(tmp_path, 3, (64, 64))
    assert cal.shape == (3, 64, 64, 3) and cal.dtype == np.float32
    # Letterboxed: the red image fills the top 32 rows, grey padding below; RGB order kept.
    assert cal[0, 5, 30, 0] > 250 and cal[0, 5, 30, 2] < 5
    assert np.allclose(cal[0, 50, 30], 128)


@pytest.mark.slow
def test_export_script_cli(trained, tmp_path):
    out = tmp_path / "cli"
    r = subprocess.run(
        [sys.executable, str(REPO / "export" / "export_tflite.py"),
         "--model", str(trained["dir"] / "model.keras"), "--quantize", "dynamic",
         "--calibration_source", "synthetic", "--calibration_images", "2", "--output", str(out)],
        capture_output=True, text=True, timeout=240, cwd=REPO)
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads(r.stdout.strip().splitlines()[-1])
    assert res["quantize"] == "dynamic" and (out / "model.tflite").is_file()
    assert json.loads((out / "model.json").read_text())["validation"]["num_images"] == 2


@pytest.mark.slow
def test_qat_end_to_end(tmp_path):
    """QAT on the tiny IMHN (tf_keras twin, SE Multiply annotated), 2 steps, int8 conversion.

    Runs in a subprocess: importing tfmot changes process-wide Keras state.
    """
    code = f"""
import sys, json, numpy as np
sys.path.insert(0, {str(REPO / 'tests')!r})
import _tiny_pose_model as tiny
from keras_pose.export import tflite as export_lib
from keras_pose.models.imhn import build_imhn
import keras
keras.utils.set_random_seed(0)
cfg = tiny.tiny_imhn_config()
m = build_imhn(cfg)
# A fresh IMHN outputs ~0 (N(0, 0.001) init): widen the weights so the maps vary.
m.set_weights([w * 300 if w.ndim == 4 else w for w in m.get_weights()])
x, _ = tiny.synthetic_set(4)
from keras_pose.descriptor import describe
side = export_lib.export_tflite(m, {str(tmp_path)!r}, "qat", x, descriptor=describe(cfg),
                                qat_kwargs=dict(model_config=cfg, steps=2), log=lambda s: None)
import os
print(json.dumps({{"side": side, "legacy": os.environ.get("TF_USE_LEGACY_KERAS")}}))
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=850, cwd=REPO)
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads(r.stdout.strip().splitlines()[-1])
    side = res["side"]
    assert res["legacy"] is None  # the tfmot side effect was undone
    assert side["quantize"] == "qat" and side["input"]["dtype"] == "uint8"
    assert side["outputs"][0]["shape"] == [1, 16, 16, 50]
    assert side["validation"]["correlation"] > 0.8


@pytest.mark.slow
def test_quantization_table_on_a_tiny_model(trained, tmp_path):
    """benchmarks/quantization_table.py: one JSON with size, latency and AP per mode."""
    from keras_pose.data.synthetic import generate_dataset
    d = tmp_path / "run"
    d.mkdir()
    shutil.copy(trained["dir"] / "model.keras", d / "model.keras")
    (d / "config.json").write_text(json.dumps({"preset": "imhn_test"}))
    paths = generate_dataset(tmp_path / "syn", 0, 3, seed=5, image_size=(64, 64),
                             config="easy", progress=False)
    r = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "quantization_table.py"),
         "--model_dir", str(d), "--val_images", paths["val_images"],
         "--val_annotations", paths["val_annotations"], "--modes", "fp32,dynamic,int8",
         "--calibration_images", "4", "--num_threads", "1"],
        capture_output=True, text=True, timeout=600, cwd=REPO)
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads(r.stdout)
    assert res["val_images"] == 3 and set(res["modes"]) == {"fp32", "dynamic", "int8"}
    for mode, row in res["modes"].items():
        assert "error" not in row, row
        assert row["size_bytes"] > 0 and row["network_ms_median"] > 0
        assert -1 <= row["AP"] <= 1
    assert res["modes"]["int8"]["size_bytes"] < res["modes"]["fp32"]["size_bytes"]
    assert "network_speedup_vs_fp32" in res["modes"]["int8"]
