"""TFLiteRunner: poses in original pixels, timings, and one clear error per bad input."""
import json
import shutil

import numpy as np
import pytest

import _tiny_pose_model as tiny


@pytest.fixture(scope="module")
def exported():
    return tiny.trained_export()


@pytest.fixture()
def model_copy(exported, tmp_path):
    for f in ("model.tflite", "model.json"):
        shutil.copy(exported["fp32"].parent / f, tmp_path / f)
    return tmp_path / "model.tflite"


def test_predict_maps_back_to_original_pixels(exported):
    """runner(big image) == letterbox -> Keras maps -> decode -> inverse letterbox.

    The image is a 2x (132 x 128, 4 black rows added) copy of a training scene, so the
    letterbox scales by 64/132 and the inverse must map the persons back into the big frame.
    """
    import cv2
    from keras_pose.codecs import BodyPartsCodec
    from keras_pose.geometry import letterbox_to
    from keras_pose.inference.tflite_runner import TFLiteRunner
    from keras_pose.structures import invert_affine
    runner = TFLiteRunner(exported["fp32"])
    codec, em = BodyPartsCodec(), exported["export_model"]
    img = exported["images"].astype(np.uint8)
    checked = 0
    for i in range(len(img)):
        big = cv2.resize(img[i], (128, 128), interpolation=cv2.INTER_CUBIC)
        big = np.concatenate([big, np.zeros((4, 128, 3), np.uint8)], axis=0)  # pad: 132 x 128
        got = runner(big)
        assert {"preprocess", "network", "decode"} <= set(runner.last_timing)
        x, m = letterbox_to(big, (64, 64))
        ref = codec.decode(em.predict(x[None].astype(np.float32), verbose=0)[0])
        ref = ref.transform(invert_affine(m))
        assert len(got) == len(ref)
        assert np.allclose(got.keypoints, ref.keypoints, atol=0.5)
        if len(got):
            found = got.keypoints[..., 2] > 0
            # Original-image frame: inside the 132 x 128 picture, beyond the 64 x 64 input.
            assert got.keypoints[found, 1].max() < 132 and got.keypoints[found, 0].max() < 128
            checked += 1
    assert checked > 0


def test_predict_accepts_a_path_and_matches_array(exported, tmp_path):
    import cv2
    from keras_pose.inference.tflite_runner import TFLiteRunner
    runner = TFLiteRunner(exported["fp32"], num_threads=1)
    img = exported["images"][0].astype(np.uint8)
    cv2.imwrite(str(tmp_path / "a.png"), img[..., ::-1])  # BGR on disk
    a, b = runner.predict(img), runner.predict(tmp_path / "a.png")
    assert np.allclose(a.keypoints, b.keypoints) and np.allclose(a.scores, b.scores)


def test_truncated_model_is_one_clear_error(model_copy):
    from keras_pose.inference.tflite_runner import TFLiteRunner, TFLiteRunnerError
    data = model_copy.read_bytes()
    model_copy.write_bytes(data[: len(data) // 3])
    with pytest.raises(TFLiteRunnerError, match="model.tflite"):
        TFLiteRunner(model_copy)


def test_missing_sidecar(model_copy):
    from keras_pose.inference.tflite_runner import TFLiteRunner, TFLiteRunnerError
    (model_copy.parent / "model.json").unlink()
    with pytest.raises(TFLiteRunnerError, match="sidecar not found"):
        TFLiteRunner(model_copy)


@pytest.mark.parametrize("field,value,match", [
    ("input", [1, 128, 128, 3], "sidecar input"),
    ("output_channels", 17, "output channels"),
])
def test_sidecar_not_matching_model(model_copy, field, value, match):
    from keras_pose.inference.tflite_runner import TFLiteRunner, TFLiteRunnerError
    p = model_copy.parent / "model.json"
    side = json.loads(p.read_text())
    if field == "input":
        side["input"]["shape"] = value
    else:
        side["outputs"][0]["shape"][-1] = value
    p.write_text(json.dumps(side))
    with pytest.raises(TFLiteRunnerError, match=match):
        TFLiteRunner(model_copy)


def test_unreadable_image(exported, tmp_path):
    from keras_pose.inference.tflite_runner import TFLiteRunner, TFLiteRunnerError
    runner = TFLiteRunner(exported["fp32"])
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8 not really a jpeg")
    with pytest.raises(TFLiteRunnerError, match="broken.jpg"):
        runner(bad)
    with pytest.raises(TFLiteRunnerError, match="not found"):
        runner(tmp_path / "missing.png")
    with pytest.raises(TFLiteRunnerError):
        runner(np.zeros((0, 5, 3), np.uint8))


def test_xnnpack_failure_falls_back_to_builtin_kernels(exported, monkeypatch, caplog):
    """allocate_tensors failing under the default delegate -> retried without it (logged)."""
    from ai_edge_litert import interpreter as litert
    from keras_pose.inference import tflite_runner as rt
    real = litert.Interpreter
    calls = []

    class Flaky(real):
        def __init__(self, *a, **kw):
            super().__init__(*a, **kw)
            self._default = "experimental_op_resolver_type" not in kw
            calls.append(kw.get("experimental_op_resolver_type"))

        def allocate_tensors(self):
            if self._default:
                raise RuntimeError("failed to create XNNPACK runtime (simulated)")
            return super().allocate_tensors()

    monkeypatch.setattr(litert, "Interpreter", Flaky)
    with caplog.at_level("WARNING"):
        net = rt.NetRunner(str(exported["fp32"]))
    assert calls == [None, litert.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES]
    assert "XNNPACK" in caplog.text
    assert net.run(exported["images"][0]).shape == (16, 16, 50)


def test_int8_input_quantization_roundtrip():
    from keras_pose.inference.tflite_runner import NetRunner
    net = NetRunner.__new__(NetRunner)
    net.input = {"dtype": np.int8, "quantization": (1.0, -128)}
    q = net.quantize_input(np.array([0.0, 127.6, 255.0, 400.0]))
    assert q.dtype == np.int8 and q.tolist() == [-128, 0, 127, 127]


def test_top_down_predict_with_boxes(tmp_path):
    """A tiny top-down model (64x48 -> 16x12x17): one pose per box, in image pixels."""
    import keras
    from keras_pose.export import tflite as export_lib
    from keras_pose import geometry as crops
    from keras_pose.codecs.postprocess import rescore
    from keras_pose.inference.tflite_runner import TFLiteRunner, TFLiteRunnerError
    from keras_pose.structures import apply_affine, invert_affine
    keras.utils.set_random_seed(1)
    x = inp = keras.Input((64, 48, 3))
    x = keras.layers.Rescaling(1 / 255.0)(x)
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu")(x)
    x = keras.layers.Conv2D(17, 3, strides=2, padding="same", activation="sigmoid",
                            name="heatmaps")(x)
    model = keras.Model(inp, x)
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)
    cal = rng.uniform(0, 255, (2, 64, 48, 3)).astype(np.float32)
    from keras_pose.codecs import HeatmapCodec
    from keras_pose.descriptor import RunDescriptor
    desc = RunDescriptor.create(HeatmapCodec(input_size=(64, 48), heatmap_size=(16, 12)),
                                (64, 48), "heatmaps")
    side = export_lib.export_tflite(model, tmp_path, "fp32", cal, log=lambda m: None,
                                    descriptor=desc)
    assert side["descriptor"]["task"] == "top_down"
    assert side["descriptor"]["codec"]["type"] == "HeatmapCodec"
    runner = TFLiteRunner(tmp_path / "model.tflite", flip=False, oks_nms_threshold=None)
    boxes = np.array([[10, 10, 40, 60], [80, 30, 50, 70]], np.float32)
    poses = runner.predict(image, boxes)
    assert len(poses) == 2 and poses.keypoints.shape == (2, 17, 3)
    em = export_lib.build_export_model(model, desc)
    for p, box in zip(poses.keypoints, boxes):
        c, s = crops.box_to_center_scale(box, 48 / 64)
        m = crops.crop_affine(c, s, 0.0, (64, 48))
        crop = crops.warp_crop(image, m, (64, 48)).astype(np.float32)
        kp = runner.codec.decode(em.predict(crop[None], verbose=0)[0])
        assert np.allclose(p[:, :2], apply_affine(kp[:, :2], invert_affine(m)), atol=1e-2)
    # Persons are rescored like the Keras path (box score x confident keypoints).
    np.testing.assert_allclose(poses.scores, rescore(poses.keypoints, [1.0, 1.0]), atol=1e-6)
    with pytest.raises(TFLiteRunnerError, match="boxes"):
        runner.predict(image)
