"""PosePredictor: letterbox -> model.predict -> flip/scale fusion -> decode -> original pixels.

Geometry is checked with a tiny hand-weighted model whose every channel is a
blob detector (relu(I - 128), average-pooled by 4), and a codec whose decode
returns the blob centroid as the nose: a blob drawn at (x, y) must come back at
(x, y) in original pixels through every scale and the flip path.
"""
import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
import keras  # noqa: E402

from keras_pose.codecs import BodyPartsCodec  # noqa: E402
from keras_pose.inference import PosePredictor  # noqa: E402
from keras_pose.io import ImageReadError  # noqa: E402
from keras_pose.skeleton import COCO  # noqa: E402
from keras_pose.structures import Poses  # noqa: E402

C = COCO.num_channels


def _blob_model(channels=C, name="s0_x0", input_hw=(None, None), batch_size=None):
    """(B, H, W, 3) 0..255 -> (B, H/4, W/4, channels): pooled relu(mean(I) - 128) / 127."""
    inp = keras.Input((*input_hw, 3), batch_size=batch_size)
    x = keras.layers.Conv2D(1, 1, activation="relu",
                            kernel_initializer=keras.initializers.Constant(1 / 3 / 127),
                            bias_initializer=keras.initializers.Constant(-128 / 127))(inp)
    x = keras.layers.AveragePooling2D(4)(x)
    out = keras.layers.Conv2D(channels, 1, use_bias=False, kernel_initializer="ones", name=name)(x)
    return keras.Model(inp, out)


class CentroidCodec(BodyPartsCodec):
    """Decodes the nose as the centroid of the first keypoint channel (cell q at 4q + 1.5)."""

    def __init__(self):
        super().__init__()
        self.flip_calls = 0
        self.heights = []

    def fuse_flip(self, maps, mirrored_maps):
        self.flip_calls += 1
        return 0.5 * (maps + mirrored_maps[:, ::-1, self.spec.channel_flip_perm])

    def decode(self, heatmaps, image_height=None):
        self.heights.append(image_height)
        ch = heatmaps[..., self.spec.keypoint_start].astype(np.float64)
        ys, xs = np.mgrid[:ch.shape[0], :ch.shape[1]]
        s = self.config.stride
        x = (ch * xs).sum() / ch.sum() * s + s / 2 - 0.5
        y = (ch * ys).sum() / ch.sum() * s + s / 2 - 0.5
        kp = np.zeros((1, self.spec.num_keypoints, 3), np.float32)
        kp[0, 0] = [x, y, 1.0]
        return Poses(kp, [1.0])


def _blob_image(h, w, x, y, sigma=8.0):
    ys, xs = np.mgrid[:h, :w]
    g = 255 * np.exp(-((xs - x) ** 2 + (ys - y) ** 2) / (2 * sigma ** 2))
    return np.repeat(np.round(g).astype(np.uint8)[..., None], 3, axis=2)


@pytest.fixture(scope="module")
def blob_model():
    return _blob_model()


@pytest.mark.parametrize("scales,flip", [((1.0,), False), ((1.0,), True), ((0.5,), False),
                                         ((0.5, 1.0, 1.5), True)])
def test_blob_comes_back_in_original_pixels(blob_model, scales, flip):
    codec = CentroidCodec()
    pred = PosePredictor(blob_model, codec, input_height=128, scales=scales, flip=flip)
    h, w, x, y = 150, 230, 151.0, 60.0
    poses = pred.predict(_blob_image(h, w, x, y))
    assert isinstance(poses, Poses) and poses.keypoints.shape == (1, 17, 3)
    np.testing.assert_allclose(poses.keypoints[0, 0, :2], [x, y], atol=0.25)
    assert codec.flip_calls == (len(scales) if flip else 0)
    # The length prior gets the image height in input pixels (scale 1.0 frame).
    assert codec.heights == [128.0]


def test_maps_frame_and_shapes(blob_model):
    pred = PosePredictor(blob_model, CentroidCodec(), input_height=128, scales=(0.75, 1.0))
    maps, m, content = pred.maps(_blob_image(150, 230, 100, 70))
    # Scale-1.0 letterbox of 150x230 at height 128: 128 x 196 content, padded 128 x 256.
    assert content == (128, 196) and maps.shape == (32, 64, C)
    np.testing.assert_allclose(m[1, 1], 128 / 150)
    assert maps.dtype == np.float32


def test_batched_list_groups_equal_sizes(blob_model, monkeypatch):
    codec = CentroidCodec()
    pred = PosePredictor(blob_model, codec, input_height=128, flip=True)
    calls = []
    real = pred.net.predict
    monkeypatch.setattr(pred.net, "predict", lambda x, **kw: calls.append(x.shape) or real(x, **kw))
    images = [_blob_image(150, 230, 40, 50), _blob_image(150, 230, 180, 90),
              _blob_image(100, 100, 30, 60)]
    out = pred.predict(images)
    assert [type(p) for p in out] == [Poses] * 3
    for p, (x, y) in zip(out, [(40, 50), (180, 90), (30, 60)]):
        np.testing.assert_allclose(p.keypoints[0, 0, :2], [x, y], atol=0.25)
    # Two padded sizes -> two predict calls; each image with its mirror.
    assert sorted(s[0] for s in calls) == [2, 4]
    assert set(pred.last_timing) == {"load", "preprocess", "network", "fuse", "decode"}
    assert all(v >= 0 for v in pred.last_timing.values())


def test_training_model_uses_last_stack_finest_output():
    inp = keras.Input((None, None, 3))
    pooled = keras.layers.AveragePooling2D(4)(inp)
    outs = []
    for t in range(2):
        x = keras.layers.Conv2D(C, 1, kernel_initializer=keras.initializers.Constant(t + 1.0),
                                use_bias=False, name=f"s{t}_x0")(pooled)
        outs += [x, keras.layers.AveragePooling2D(2, name=f"s{t}_x1")(x)]
    model = keras.Model(inp, outs)
    with pytest.raises(ValueError, match="4 outputs"):
        PosePredictor(model, CentroidCodec(), input_height=64)  # which one is not guessed
    pred = PosePredictor(model, CentroidCodec(), input_height=64,
                         output={"layer": "s1_x0", "activation": None})
    assert len(pred.net.outputs) == 1
    img = np.full((64, 64, 3), 10, np.uint8)
    maps, _, _ = pred.maps(img)
    # s1_x0 has kernel 2: per channel 2 * 3 * 10 = 60.
    np.testing.assert_allclose(maps, 60.0, rtol=1e-5)


def test_top_down_models_are_refused():
    with pytest.raises(NotImplementedError, match="TopDownPredictor"):
        PosePredictor(_blob_model(channels=17, name="heatmaps"))
    from keras_pose.codecs import HeatmapCodec
    with pytest.raises(NotImplementedError, match="TopDownPredictor"):
        PosePredictor(_blob_model(), codec=HeatmapCodec())


def test_fixed_size_model_uses_letterbox_to():
    model = _blob_model(input_hw=(96, 128))
    pred = PosePredictor(model, CentroidCodec())
    assert pred.fixed_size == (96, 128) and pred.input_height == 96
    h, w, x, y = 200, 300, 210.0, 80.0
    poses = pred.predict(_blob_image(h, w, x, y, sigma=10))
    np.testing.assert_allclose(poses.keypoints[0, 0, :2], [x, y], atol=0.25)
    # Asking for a height or several scales re-builds it on a (None, None) input.
    dyn = PosePredictor(model, CentroidCodec(), input_height=128, scales=(0.5, 1.0), flip=True)
    assert dyn.fixed_size is None and dyn.input_height == 128
    poses = dyn.predict(_blob_image(h, w, x, y, sigma=10))
    np.testing.assert_allclose(poses.keypoints[0, 0, :2], [x, y], atol=0.25)
    # Several scales and no height: scale 1.0 stays the model's own height (the
    # quickstart's multi-scale evaluation), not the authors' 640 px default.
    multi = PosePredictor(model, CentroidCodec(), scales=(1.0, 1.5))
    assert multi.fixed_size is None and multi.input_height == 96
    poses = multi.predict(_blob_image(h, w, x, y, sigma=10))
    np.testing.assert_allclose(poses.keypoints[0, 0, :2], [x, y], atol=0.25)
    # An export-style model with a fixed batch of 1: lists run one input at a time.
    pred1 = PosePredictor(_blob_model(input_hw=(96, 128), batch_size=1), CentroidCodec(), flip=True)
    out = pred1.predict([_blob_image(h, w, x, y, sigma=10), _blob_image(120, 90, 30, 70, sigma=6)])
    np.testing.assert_allclose(out[0].keypoints[0, 0, :2], [x, y], atol=0.25)
    np.testing.assert_allclose(out[1].keypoints[0, 0, :2], [30, 70], atol=0.25)


def test_bad_image_names_the_file(blob_model, tmp_path):
    pred = PosePredictor(blob_model, CentroidCodec(), input_height=64)
    with pytest.raises(ImageReadError, match="nothing.png"):
        pred.predict(tmp_path / "nothing.png")


def test_real_codec_decodes_with_flip(blob_model, coco_sample_dir):
    """The real BodyPartsCodec on a real photo: runs end to end and returns valid Poses."""
    pytest.importorskip("keras_pose.codecs._bp_decode")
    pred = PosePredictor(blob_model, input_height=128, flip=True, scales=(1.0, 0.75))
    poses = pred.predict(coco_sample_dir / "000000000785.jpg")
    assert isinstance(poses, Poses) and poses.keypoints.shape[1:] == (17, 3)
    found = poses.keypoints[..., 2] > 0
    assert np.all(poses.keypoints[..., :2][~found] == 0)
    if found.any():  # coordinates are in original pixels (640 x 425 image)
        xy = poses.keypoints[..., :2][found]
        assert xy[:, 0].max() < 640 + 8 and xy[:, 1].max() < 425 + 8 and xy.min() > -8


def test_oracle_maps_decode_to_gt_ap(coco_sample_dir):
    """GT encoded in each image's letterbox frame -> decode -> original pixels -> COCOeval.

    Checks that the real codec, the letterbox affine, the inverse mapping and the
    evaluator agree: perfect maps must give near-perfect AP.
    """
    pytest.importorskip("keras_pose.codecs._bp_decode")
    import json
    from keras_pose.evaluation import evaluate_keypoints, results_from_poses
    from keras_pose.inference.predictor import decode_to_original
    from keras_pose.geometry import letterbox_geometry
    from keras_pose.structures import apply_affine

    gt_path = coco_sample_dir / "test_coco.json"
    gt = json.loads(gt_path.read_text())
    codec = BodyPartsCodec()
    found = {}
    for im in gt["images"]:
        kps = np.array([a["keypoints"] for a in gt["annotations"]
                        if a["image_id"] == im["id"] and a["num_keypoints"] > 0],
                       np.float64).reshape(-1, 17, 3)
        content, padded, m = letterbox_geometry((im["height"], im["width"]), 640, 64)
        kps[..., :2] = apply_affine(kps[..., :2], m)
        maps = codec.encode(kps, padded)["heatmaps"]
        found[im["id"]] = decode_to_original(codec, maps, m, content)
    stats = evaluate_keypoints(results_from_poses(found), gt_path)
    assert stats["AP"] > 0.95 and stats["AR"] > 0.95


@pytest.mark.slow
def test_tiny_imhn_training_model(coco_sample_dir):
    """A real (tiny, untrained) 2-stack IMHN: the last stack's finest output, flip, Poses."""
    imhn = pytest.importorskip("keras_pose.models.imhn")
    configs = pytest.importorskip("keras_pose.models.configs")
    pytest.importorskip("keras_pose.codecs._bp_decode")
    from keras_pose.io import load_image

    cfg = configs.IMHNConfig(stacks=2, width=16, growth=8, order=2, input_size=(64, 64),
                             feature_width=16, se_reduction=4)
    model = imhn.build_imhn(cfg)
    from keras_pose.descriptor import describe
    pred = PosePredictor(model, input_height=64, flip=True, output=describe(cfg))
    assert pred.fixed_size is None  # cloned for the height letterbox
    # Regression: a fresh model fed padded widths 448 then 384 crashed in the dilated
    # stem when Keras re-traced predict with relaxed shapes (one function per size now).
    wide = [pred.predict(np.full((64, w, 3), 90, np.uint8)) for w in (420, 380)]
    assert [p.keypoints.shape[1:] for p in wide] == [(17, 3), (17, 3)]
    img = load_image(coco_sample_dir / "000000040083.jpg")  # 333 x 500
    crop = np.ascontiguousarray(img[100:164, 200:264])
    # Raw network maps of a 64 x 64 input (no resize, no padding) == the s1_x0 head.
    names = list(model.output_names)
    pair = np.stack([crop, crop[:, ::-1]])  # batch 2, as the flip path runs it (one trace)
    ref = model.predict(pair.astype(np.float32), verbose=0)[names.index("s1_x0")]
    np.testing.assert_allclose(pred._run(pair), ref, rtol=1e-4, atol=1e-4)
    out = pred.predict([img, crop])  # 333 x 500 -> 64 x 96 content, padded 64 x 128
    assert [p.keypoints.shape[1:] for p in out] == [(17, 3), (17, 3)]
