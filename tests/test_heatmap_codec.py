"""HeatmapCodec: UDP/DARK alignment for every FasterPose r, weights, flip fusion, config."""
import json
import subprocess
import sys

import numpy as np
import pytest

from keras_pose.codecs import HeatmapCodec, HeatmapCodecConfig
from keras_pose.skeleton import COCO

INPUT = (256, 192)
# FasterPose r = 1, 2, 4, 8 on a 256x192 input (stride 32 / r); 64x48 is also SimpleBaseline's.
SIZES = {1: (8, 6), 2: (16, 12), 4: (32, 24), 8: (64, 48)}


def _interior_keypoints(rng, hm_size, n=17):
    """Fractional crop positions whose heatmap centre is >= 1.5 px from the map border."""
    h, w = hm_size
    sx, sy = (INPUT[1] - 1) / (w - 1), (INPUT[0] - 1) / (h - 1)
    kp = np.zeros((n, 3))
    kp[:, 0] = rng.uniform(1.5, w - 2.5, n) * sx
    kp[:, 1] = rng.uniform(1.5, h - 2.5, n) * sy
    kp[:, 2] = 2
    return kp, (sx, sy)


@pytest.mark.parametrize("r", [1, 2, 4, 8])
def test_fractional_position_decodes_within_a_tenth_of_a_heatmap_pixel(r):
    codec = HeatmapCodec(heatmap_size=SIZES[r])
    rng = np.random.default_rng(r)
    for _ in range(5):
        kp, (sx, sy) = _interior_keypoints(rng, SIZES[r])
        enc = codec.encode(kp)
        assert enc["heatmaps"].shape == SIZES[r] + (17,) and enc["heatmaps"].dtype == np.float32
        np.testing.assert_array_equal(enc["weights"], np.ones(17, np.float32))
        dec = codec.decode(enc["heatmaps"])
        err = np.abs(dec[:, :2] - kp[:, :2]) / np.array([sx, sy])   # in heatmap pixels
        assert err.max() < 0.1, (r, err.max())
        # The peak is the Gaussian sampled off-centre, so the score is < 1 but close.
        assert np.all(dec[:, 2] > 0.5) and np.all(dec[:, 2] <= 1.0)


def test_dark_beats_plain_argmax_and_batch_matches_single():
    codec = HeatmapCodec()
    plain = HeatmapCodec(use_dark=False)
    rng = np.random.default_rng(0)
    kps = [_interior_keypoints(rng, (64, 48))[0] for _ in range(3)]
    maps = np.stack([codec.encode(k)["heatmaps"] for k in kps])
    batch = codec.decode(maps)
    assert batch.shape == (3, 17, 3)
    for i, k in enumerate(kps):
        np.testing.assert_allclose(batch[i], codec.decode(maps[i]), atol=1e-5)
    err_dark = np.abs(batch[..., :2] - np.stack(kps)[..., :2]).mean()
    err_plain = np.abs(plain.decode(maps)[..., :2] - np.stack(kps)[..., :2]).mean()
    assert err_dark < 0.05 < err_plain


def test_weights_zero_for_unlabelled_nan_and_far_off_map():
    codec = HeatmapCodec()   # 64x48, sigma 2 -> off-map limit 6 heatmap px = 24 crop px
    kp = np.tile([[96.0, 128.0, 2.0]], (17, 1))
    kp[1, 2] = 0                       # unlabelled
    kp[2, :2] = np.nan                 # broken annotation
    kp[3, 0] = -30.0                   # 7.5 heatmap px left of the map: no mass on it
    kp[4, 0] = -10.0                   # 2.5 px left: its tail is still on the map
    kp[5, 1] = 256 + 40.0              # far below
    enc = codec.encode(kp)
    w = enc["weights"]
    assert w[[1, 2, 3, 5]].tolist() == [0, 0, 0, 0]
    assert w[[0, 4]].tolist() == [1, 1]
    assert np.all(enc["heatmaps"][..., [1, 2, 3, 5]] == 0)
    assert enc["heatmaps"][..., 4].max() > 0.1
    packed = codec.pack_targets(enc)
    assert packed.shape == (64, 48, 34)
    np.testing.assert_array_equal(packed[5, 7, 17:], w)


def test_flip_fusion_of_a_symmetric_target_equals_own_decode():
    """Mirror the crop (x -> W-1-x, joints swapped): the fused maps decode like the crop's own."""
    for r in (2, 8):
        codec = HeatmapCodec(heatmap_size=SIZES[r])
        rng = np.random.default_rng(10 + r)
        kp, _ = _interior_keypoints(rng, SIZES[r])
        mirrored = kp.copy()
        mirrored[:, 0] = (INPUT[1] - 1) - kp[:, 0]
        mirrored = mirrored[COCO.flip_perm]
        own = codec.encode(kp)["heatmaps"]
        mir = codec.encode(mirrored)["heatmaps"]
        fused = codec.fuse_flip(own, mir)
        np.testing.assert_allclose(fused, own, atol=1e-6)
        np.testing.assert_allclose(codec.decode(fused), codec.decode(own), atol=1e-4)
        # Batched form and a wrong-shape error.
        assert codec.fuse_flip(own[None], mir[None]).shape == (1,) + own.shape
        with pytest.raises(ValueError, match="fuse_flip"):
            codec.fuse_flip(own, mir[:, :-1])


def test_flip_shift_option_moves_the_fused_peak():
    codec = HeatmapCodec(flip_shift=True)
    kp = np.tile([[96.0, 128.0, 2.0]], (17, 1))
    own = codec.encode(kp)["heatmaps"]
    mir = codec.encode(kp * [[-1, 1, 1]] + [[191, 0, 0]])["heatmaps"]
    x_fused = codec.decode(codec.fuse_flip(own, mir))[0, 0]
    assert x_fused > codec.decode(own)[0, 0] + 0.5   # shifted by half a heatmap px to the right


def test_defaults_scale_with_resolution_and_config_round_trip():
    assert HeatmapCodec().sigma == 2.0 and HeatmapCodec().blur_kernel == 11
    c32 = HeatmapCodec(heatmap_size=(32, 24))
    assert c32.sigma == 1.0 and c32.blur_kernel % 2 == 1 and c32.blur_kernel >= 3
    c8 = HeatmapCodec(heatmap_size=(8, 6))
    assert c8.blur_kernel == 3 and c8.sigma >= 0.5
    assert HeatmapCodec(input_size=(384, 288), heatmap_size=(96, 72)).sigma == 3.0
    cfg = HeatmapCodecConfig(heatmap_size=(16, 12), sigma=1.5)
    back = HeatmapCodec.from_config(json.loads(json.dumps(HeatmapCodec(cfg).get_config())))
    assert back.config == cfg and back.sigma == 1.5
    with pytest.raises(ValueError, match="blur_kernel"):
        HeatmapCodec(blur_kernel=4)
    with pytest.raises(ValueError, match="heatmap_size"):
        HeatmapCodec(heatmap_size=(2, 6))


def test_bad_shapes_give_one_clear_error():
    codec = HeatmapCodec()
    with pytest.raises(ValueError, match="encode"):
        codec.encode(np.zeros((5, 3)))
    with pytest.raises(ValueError, match="decode"):
        codec.decode(np.zeros((32, 24, 17)))


def test_flat_and_nan_maps_decode_without_crashing():
    codec = HeatmapCodec(heatmap_size=(16, 12))
    maps = np.zeros((2, 16, 12, 17), np.float32)
    maps[1, ..., 3] = np.nan
    out = codec.decode(maps)
    assert np.isfinite(out).all() and np.all(out[..., 2] == 0)


def test_codec_imports_without_tensorflow():
    code = ("import sys; import keras_pose.codecs.heatmap, keras_pose.data.crops, "
            "keras_pose.data.topdown_pipeline, keras_pose.evaluation.topdown, "
            "keras_pose.inference.topdown_predictor; "
            "assert 'tensorflow' not in sys.modules, 'tensorflow imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("r", [2, 8])
def test_peaks_on_and_just_beyond_the_border_are_refined(r):
    """The argmax sits on the border row/column: the moved stencil still finds the vertex."""
    codec = HeatmapCodec(heatmap_size=SIZES[r])
    h, w = SIZES[r]
    sx, sy = (INPUT[1] - 1) / (w - 1), (INPUT[0] - 1) / (h - 1)
    hm_xy = np.array([[0.3, h / 2 + 0.37], [-0.4, 2.2], [w - 1.2, 0.25], [w / 2 + 0.1, h - 0.7]])
    kp = np.zeros((17, 3))
    kp[:, :2] = np.tile(hm_xy, (5, 1))[:17] * [sx, sy]
    kp[:, 2] = 1
    dec = codec.decode(codec.encode(kp)["heatmaps"])
    err = np.abs(dec[:, :2] - kp[:, :2]) / [sx, sy]
    assert err.max() < 0.1, err.max()
    plain = HeatmapCodec(heatmap_size=SIZES[r], use_dark=False).decode(codec.encode(kp)["heatmaps"])
    assert (np.abs(plain[:, :2] - kp[:, :2]) / [sx, sy]).max() > 0.25
