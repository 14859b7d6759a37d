"""The authors' test protocol as a PosePredictor option (fuse_at="image", protocol "paper").

Geometry with the blob model of tests/test_predictor.py: a blob drawn at (x, y)
must come back at (x, y) when every scale's maps are brought to the original
image (x4 bicubic, padding cropped, bicubic resize) and decoded there.
"""
import numpy as np
import pytest

pytest.importorskip("tensorflow")

from test_predictor import CentroidCodec, _blob_image, _blob_model  # noqa: E402

from keras_pose.inference.predictor import PROTOCOLS, PosePredictor, protocol_options  # noqa: E402
from keras_pose.skeleton import COCO  # noqa: E402


@pytest.fixture(scope="module")
def blob_model():
    return _blob_model()


@pytest.mark.parametrize("scales,flip", [((1.0,), False), ((0.5, 1.0, 1.5), True)])
def test_fused_at_image_resolution(blob_model, scales, flip):
    codec = CentroidCodec()
    pred = PosePredictor(blob_model, codec, input_height=128, scales=scales, flip=flip,
                         fuse_at="image")
    h, w, x, y = 150, 230, 151.0, 60.0
    image = _blob_image(h, w, x, y)
    maps, m, content = pred.maps(image)
    # Maps at the original image size, stride 1, identity frame.
    assert maps.shape == (h, w, COCO.num_channels) and content == (h, w)
    np.testing.assert_allclose(m, [[1, 0, 0], [0, 1, 0]])
    poses = pred.predict(image)
    np.testing.assert_allclose(poses.keypoints[0, 0, :2], [x, y], atol=0.5)
    assert codec.flip_calls == (2 * len(scales) if flip else 0)  # maps() and predict()
    # The length prior sees the original image height; the user's codec keeps stride 4.
    assert codec.heights[-1] == float(h) and codec.config.stride == 4


def test_image_and_map_fusion_agree_on_position(blob_model):
    image = _blob_image(170, 120, 40.0, 101.0)
    kw = dict(input_height=128, scales=(0.75, 1.25), flip=True)
    a = PosePredictor(blob_model, CentroidCodec(), fuse_at="map", **kw).predict(image)
    b = PosePredictor(blob_model, CentroidCodec(), fuse_at="image", **kw).predict(image)
    np.testing.assert_allclose(a.keypoints[0, 0, :2], b.keypoints[0, 0, :2], atol=0.5)


def test_protocol_options():
    paper = protocol_options("paper")
    assert paper == {"input_height": 512, "scales": (0.5, 1.0, 1.5, 2.0, 3.0), "flip": True,
                     "fuse_at": "image", "multiple": 64, "pad_value": 128, "grouping": "paper"}
    assert protocol_options("paper", scales=(1.0,), flip=None)["scales"] == (1.0,)
    assert protocol_options("paper", flip=None)["flip"] is True
    assert protocol_options("default") == {} and set(PROTOCOLS) == {"default", "paper"}
    with pytest.raises(ValueError, match="unknown protocol 'fast'"):
        protocol_options("fast")


def test_grouping_override_keeps_the_users_codec(blob_model):
    from keras_pose.codecs import BodyPartsCodec
    codec = BodyPartsCodec(grouping="matched")
    pred = PosePredictor(blob_model, codec, grouping="paper")
    assert pred.codec.config.grouping == "paper" and codec.config.grouping == "matched"
    with pytest.raises(ValueError, match="grouping"):
        PosePredictor(blob_model, codec, grouping="nearest")


def test_fuse_at_is_checked(blob_model):
    with pytest.raises(ValueError, match="fuse_at must be one of map, image"):
        PosePredictor(blob_model, CentroidCodec(), fuse_at="original")
