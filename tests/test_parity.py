"""Keras vs TFLite, pose by pose, through keras_pose.load: one inference path for both.

For both tasks the Keras run folder and its fp32 export must give the same persons
(same count), keypoints within 0.5 px and scores within 1e-3, in original pixels of
non-square images: the real COCO sample photos and synthetic scenes. Bottom-up uses the
tiny IMHN trained once per session (tests/_tiny_pose_model.py); top-down a tiny seeded
convolutional heatmap model (64 x 48 crops -> 16 x 12 maps).
"""
import json

import numpy as np
import pytest

import _tiny_pose_model as tiny

KP_TOL, SCORE_TOL = 0.5, 1e-3


def _assert_same_poses(a, b, what):
    assert len(a) == len(b), f"{what}: {len(a)} persons (Keras) vs {len(b)} (TFLite)"
    if not len(a):
        return
    a, b = a.sorted(), b.sorted()
    np.testing.assert_allclose(a.scores, b.scores, atol=SCORE_TOL, err_msg=what)
    np.testing.assert_array_equal(a.keypoints[..., 2] > 0, b.keypoints[..., 2] > 0, err_msg=what)
    d = np.abs(a.keypoints[..., :2] - b.keypoints[..., :2]).max()
    assert d <= KP_TOL, f"{what}: keypoints differ by {d:.3f} px"
    np.testing.assert_allclose(a.keypoints[..., 2], b.keypoints[..., 2], atol=SCORE_TOL,
                               err_msg=what)


def _synthetic_scenes(n, size, seed):
    """(images, [boxes (P, 4)]) of non-square synthetic scenes."""
    from keras_pose.data import synthetic
    rng = np.random.default_rng(seed)
    cfg = synthetic.get_preset("easy").replace(max_figures=2, min_height=0.6, max_height=0.9)
    images, boxes = [], []
    for _ in range(n):
        img, anns = synthetic.make_scene(rng, size, cfg)
        images.append(img)
        boxes.append(np.array([a["bbox"] for a in anns if a.get("num_keypoints", 0) > 0],
                              np.float64).reshape(-1, 4))
    return images, boxes


def _coco_sample(coco_sample_dir):
    from keras_pose.io import load_image
    gt = json.loads((coco_sample_dir / "test_coco.json").read_text())
    images, boxes = [], []
    for im in gt["images"]:
        images.append(load_image(coco_sample_dir / im["file_name"]))
        boxes.append(np.array([a["bbox"] for a in gt["annotations"]
                               if a["image_id"] == im["id"] and a["num_keypoints"] > 0]))
    assert all(i.shape[0] != i.shape[1] for i in images)
    return images, boxes


# ------------------------------------------------------------------ bottom-up
@pytest.fixture(scope="module")
def bottom_up():
    import keras_pose
    e = tiny.trained_export()
    return keras_pose.load(e["dir"]), keras_pose.load(e["fp32"]), e


@pytest.mark.parametrize("flip", [False, True])
def test_bottom_up_keras_and_tflite_agree_on_synthetic_scenes(bottom_up, flip):
    keras_pred, lite, _ = bottom_up
    keras_pred.flip = lite.predictor.flip = flip
    images, _ = _synthetic_scenes(6, (64, 96), seed=3)     # wider than the 64 x 64 input
    found = 0
    for i, (a, b) in enumerate(zip(keras_pred.predict(images), lite.predict(images))):
        _assert_same_poses(a, b, f"synthetic scene {i} (flip={flip})")
        found += len(a)
    assert found > 0, "the trained tiny model should find persons in its own kind of scenes"


def test_bottom_up_keras_and_tflite_agree_on_coco_photos(bottom_up, coco_sample_dir):
    keras_pred, lite, _ = bottom_up
    keras_pred.flip = lite.predictor.flip = False
    images, _ = _coco_sample(coco_sample_dir)
    for i, (a, b) in enumerate(zip(keras_pred.predict(images), lite.predict(images))):
        _assert_same_poses(a, b, f"COCO photo {i}")


def test_bottom_up_decodes_with_the_content_height(bottom_up):
    """The limb-length prior sees the image's height inside the letterbox on both paths."""
    keras_pred, lite, _ = bottom_up
    heights = []
    for pred in (keras_pred, lite.predictor):
        real = pred.codec.decode
        pred.codec.decode = lambda maps, image_height=None: heights.append(image_height) or \
            real(maps, image_height=image_height)
        try:
            pred.predict(np.zeros((40, 120, 3), np.uint8))   # content 21 x 64 of the 64 x 64 input
        finally:
            del pred.codec.decode
    assert heights == [21.0, 21.0]


def test_load_describes_what_it_loaded(bottom_up):
    keras_pred, lite, e = bottom_up
    assert keras_pred.descriptor == e["descriptor"]
    assert lite.descriptor.replace(input=e["descriptor"].input) == e["descriptor"]
    assert lite.descriptor.input_size == (64, 64)
    assert keras_pred.net.predict(e["images"][:1], verbose=0).shape == (1, 16, 16, 50)


# ------------------------------------------------------------------- top-down
@pytest.fixture(scope="module")
def top_down(tmp_path_factory):
    """A seeded tiny heatmap model saved as a run folder and exported to fp32 TFLite."""
    import keras

    import keras_pose
    from keras_pose.codecs import HeatmapCodec
    from keras_pose.descriptor import RunDescriptor
    from keras_pose.export import tflite as export_lib

    keras.utils.set_random_seed(7)
    init = keras.initializers.HeNormal(seed=7)
    x = inp = keras.Input((64, 48, 3), name="image")
    x = keras.layers.Rescaling(1 / 127.5, offset=-1.0)(x)
    x = keras.layers.Conv2D(16, 5, strides=2, padding="same", activation="relu",
                            kernel_initializer=init)(x)
    x = keras.layers.Conv2D(16, 3, strides=2, padding="same", activation="relu",
                            kernel_initializer=init)(x)
    x = keras.layers.Conv2D(17, 3, padding="same", kernel_initializer=init, name="heatmaps")(x)
    model = keras.Model(inp, x)
    # Logits + sigmoid at inference, like FasterPose: the descriptor carries the activation.
    desc = RunDescriptor.create(HeatmapCodec(input_size=(64, 48), heatmap_size=(16, 12)),
                                (64, 48), "heatmaps", "sigmoid")
    run = tmp_path_factory.mktemp("td_run")
    model.save(run / "model.keras")
    (run / "config.json").write_text(json.dumps({"descriptor": desc.to_dict()}))
    cal = np.random.default_rng(0).uniform(0, 255, (4, 64, 48, 3)).astype(np.float32)
    export_lib.export_tflite(model, run / "fp32", "fp32", cal, descriptor=desc, log=lambda m: None)
    return keras_pose.load(run), keras_pose.load(run / "fp32" / "model.tflite")


@pytest.mark.parametrize("source", ["synthetic", "coco"])
def test_top_down_keras_and_tflite_agree(top_down, source, request):
    keras_pred, lite = top_down
    if source == "coco":
        images, boxes = _coco_sample(request.getfixturevalue("coco_sample_dir"))
    else:
        images, boxes = _synthetic_scenes(4, (120, 90), seed=5)
    assert sum(len(b) for b in boxes) > 0
    got_k = keras_pred.predict(images, boxes)
    got_l = lite.predict(images, boxes)
    maps_vary = False
    for i, (a, b) in enumerate(zip(got_k, got_l)):
        _assert_same_poses(a, b, f"{source} image {i}")
        maps_vary |= bool(len(a) and np.ptp(a.keypoints[..., 2]) > 0.01)
    assert maps_vary, "the seeded model's maps should not be flat"


def test_top_down_runs_the_full_post_processing_on_both(top_down):
    """Flip test, rescoring and OKS-NMS on both paths: a duplicated box is suppressed."""
    keras_pred, lite = top_down
    images, boxes = _synthetic_scenes(1, (120, 90), seed=5)
    dup = np.concatenate([boxes[0][:1], boxes[0][:1]])   # the same person twice
    for pred in (keras_pred, lite):
        assert len(pred.predict(images[0], dup)) == 1
    assert keras_pred.flip and lite.predictor.flip
