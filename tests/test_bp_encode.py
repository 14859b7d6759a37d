"""BodyPartsCodec.encode / .pyramid (docs/method_bottom_up.md §2.1-2.6).

The vectorised encoder is checked against the literal loop-by-loop generator in
``_bp_encode_reference.py`` on real COCO persons and on adversarial random
scenes, against TF/Keras for the pyramid, and against hand-computed values of
the formulas themselves.
"""
from __future__ import annotations

import contextlib
import io
import logging
import math
import warnings

import cv2
import numpy as np
import pytest

import _bp_encode_reference as ref
from keras_pose.codecs import BodyPartsCodec
from keras_pose.codecs import _bp_encode
from keras_pose.skeleton import COCO

TOL = 1e-5
LS, RS = COCO.names.index("left_shoulder"), COCO.names.index("right_shoulder")
NECK = COCO.internal_names.index("neck")
KP0 = COCO.keypoint_start


def _encode_both(codec, kps, size, person=None, ignore=None):
    fast = codec.encode(kps, size, person, ignore)
    slow = ref.encode_targets(codec, kps, size, person, ignore)
    return fast, slow


def _assert_close(fast, slow, what=""):
    for key in ("heatmaps", "mask"):
        a, b = fast[key], slow[key]
        assert a.dtype == np.float32 and a.shape == b.shape, (what, key, a.shape, b.shape)
        err = np.abs(a - b)
        where = np.unravel_index(err.argmax(), err.shape)
        assert err.max() <= TOL, f"{what} {key}: max error {err.max():.3g} at {where}"


def _assert_pyramid_close(codec, fast, slow, what=""):
    pf, ps = codec.pyramid(fast), ref.build_pyramid(codec, slow)
    assert len(pf) == len(ps) == codec.config.num_scales
    for j, (a, b) in enumerate(zip(pf, ps)):
        _assert_close(a, b, f"{what} scale {j}")


# ------------------------------------------------------------- scenes
def _letterbox(coco, img_id, size):
    """COCO image -> (keypoints, person mask, ignore mask) letterboxed into size x size."""
    info = coco.imgs[img_id]
    scale = size / max(info["height"], info["width"])
    tx = (size - info["width"] * scale) / 2
    ty = (size - info["height"] * scale) / 2
    m = np.array([[scale, 0, tx], [0, scale, ty]])
    kps, person, ignore = [], np.zeros((size, size), np.uint8), np.zeros((size, size), np.uint8)
    for ann in coco.loadAnns(coco.getAnnIds(imgIds=img_id)):
        seg = cv2.warpAffine(coco.annToMask(ann), m, (size, size), flags=cv2.INTER_LINEAR)
        person |= seg
        if ann["num_keypoints"] == 0:
            ignore |= seg
            continue
        kp = np.asarray(ann["keypoints"], np.float32).reshape(17, 3)
        kp[:, :2] = kp[:, :2] * scale + [tx, ty]
        kps.append(kp)
    return np.stack(kps), person, ignore


@pytest.fixture(scope="module")
def coco(coco_sample_dir):
    from pycocotools.coco import COCO as CocoApi
    with contextlib.redirect_stdout(io.StringIO()):
        return CocoApi(str(coco_sample_dir / "test_coco.json"))


def _random_scene(rng, height, width, persons):
    """Adversarial persons: near/beyond borders, occluded and missing points, one-shoulder
    persons, zero-length limbs, twins on the same spot, fractional masks."""
    kps = np.zeros((persons, 17, 3), np.float32)
    for p in range(persons):
        centre = rng.uniform([-0.1 * width, -0.1 * height], [1.1 * width, 1.1 * height])
        spread = rng.uniform(8, 0.4 * max(height, width))
        kps[p, :, :2] = centre + rng.normal(0, spread, (17, 2))
        kps[p, :, 2] = rng.choice([0, 1, 2], 17, p=[0.2, 0.3, 0.5])
        kind = p % 5
        if kind == 1:                                   # exactly one shoulder labelled
            kps[p, LS if rng.random() < 0.5 else RS, 2] = 0
        elif kind == 2:                                 # zero-length limbs
            kps[p, 1:3, :2] = kps[p, 0, :2]             # nose = both eyes
            kps[p, 6, :2] = kps[p, 5, :2]               # shoulders coincide -> neck too
            kps[p, [0, 1, 2, 5, 6], 2] = 2
        elif kind == 3 and p:                           # a twin of the previous person
            kps[p] = kps[p - 1]
            kps[p, :, :2] += rng.normal(0, 3, (17, 2))
        elif kind == 4:                                 # half-pixel positions: rounding ties
            kps[p, :, :2] = np.round(kps[p, :, :2] / 2) * 2
    person = cv2.GaussianBlur((rng.random((height, width)) < 0.3).astype(np.float32), (5, 5), 2)
    ignore = rng.random((height, width)) < 0.05
    return kps, person, ignore


# ----------------------------------------------------------- parity with the reference
def test_matches_reference_on_coco_sample(coco):
    codec = BodyPartsCodec()
    ignored = 0
    for img_id in sorted(coco.imgs):
        kps, person, ignore = _letterbox(coco, img_id, 512)
        fast, slow = _encode_both(codec, kps, (512, 512), person, ignore)
        _assert_close(fast, slow, f"image {img_id}")
        _assert_pyramid_close(codec, fast, slow, f"image {img_id}")
        # real data: every image draws keypoints and limbs
        assert fast["heatmaps"][..., KP0:KP0 + 18].max() > 0.9
        assert fast["heatmaps"][..., :30].max() > 0.9
        ignored += int(fast["mask"].min() < 0.5)
    assert ignored == 2  # the two images with a zero-keypoint person have ignore regions


@pytest.mark.parametrize("seed, size, persons", [
    (0, (512, 512), 6), (1, (384, 384), 9), (2, (256, 320), 5), (3, (128, 192), 4)])
def test_matches_reference_on_random_scenes(seed, size, persons):
    rng = np.random.default_rng(seed)
    codec = BodyPartsCodec()
    kps, person, ignore = _random_scene(rng, *size, persons)
    fast, slow = _encode_both(codec, kps, size, person, ignore)
    _assert_close(fast, slow, f"seed {seed}")
    _assert_pyramid_close(codec, fast, slow, f"seed {seed}")


@pytest.mark.parametrize("overrides", [
    dict(sigma=7.0, keypoint_threshold=0.01, limb_threshold=0.04, limb_floor=0.0),
    dict(stride=8, sigma=11.0, limb_sigma=9.0, limb_margin=8.0, num_scales=3, mask_cut=0.3),
])
def test_matches_reference_with_other_configs(overrides):
    rng = np.random.default_rng(7)
    codec = BodyPartsCodec(**overrides)
    kps, person, ignore = _random_scene(rng, 256, 256, 7)
    fast, slow = _encode_both(codec, kps, (256, 256), person, ignore)
    _assert_close(fast, slow, str(overrides))
    _assert_pyramid_close(codec, fast, slow, str(overrides))


def test_encoder_is_repeatable_across_calls():
    """A per-thread scratch buffer is reused between calls: it must come back clean."""
    codec = BodyPartsCodec()
    rng = np.random.default_rng(11)
    a = _random_scene(rng, 256, 256, 6)
    b = _random_scene(rng, 384, 384, 6)
    first = codec.encode(a[0], (256, 256))["heatmaps"]
    codec.encode(b[0], (384, 384))
    np.testing.assert_array_equal(codec.encode(a[0], (256, 256))["heatmaps"], first)


def test_encoder_is_thread_safe():
    """tf.data may call the encoder from several threads at once."""
    from concurrent.futures import ThreadPoolExecutor
    codec = BodyPartsCodec()
    rng = np.random.default_rng(12)
    scenes = [_random_scene(rng, 256, 256, 6)[0] for _ in range(8)]
    serial = [codec.encode(k, (256, 256))["heatmaps"] for k in scenes]
    with ThreadPoolExecutor(4) as pool:
        parallel = list(pool.map(lambda k: codec.encode(k, (256, 256))["heatmaps"], scenes * 8))
    for i, got in enumerate(parallel):
        np.testing.assert_array_equal(got, serial[i % len(scenes)])


# --------------------------------------------------------------- formulas by hand
def _one_person(**points):
    kp = np.zeros((1, 17, 3), np.float32)
    for name, (x, y) in points.items():
        kp[0, COCO.names.index(name)] = (x, y, 2)
    return kp


def test_keypoint_gaussian_window_and_values():
    codec = BodyPartsCodec()
    assert _bp_encode.window_half(9.0, 0.015, 4) == 7 == _bp_encode.window_half(9.0, 0.01, 4)
    x, y = 201.3, 150.8
    heat = codec.encode(_one_person(nose=(x, y)), (256, 256))["heatmaps"]
    nose = heat[..., KP0 + COCO.internal_names.index("nose")]
    cq, cr = round(x / 4), round(y / 4)
    for r in range(64):
        for q in range(64):
            inside = abs(q - cq) <= 7 and abs(r - cr) <= 7
            expect = math.exp(-((4 * q + 1.5 - x) ** 2 + (4 * r + 1.5 - y) ** 2) / 162) if inside else 0
            assert nose[r, q] == pytest.approx(expect, abs=1e-6), (r, q)
    np.testing.assert_array_equal(heat[..., COCO.keypoint_max_channel], nose)
    assert heat[..., :30].max() == 0  # a lone point draws no body part


def test_keypoints_combine_by_max_and_limbs_by_mean():
    codec = BodyPartsCodec()
    a = _one_person(left_hip=(100, 100), left_knee=(100, 160))
    b = _one_person(left_hip=(108, 104), left_knee=(108, 164))
    both = codec.encode(np.concatenate([a, b]), (256, 256))["heatmaps"]
    ha, hb = (codec.encode(p, (256, 256))["heatmaps"] for p in (a, b))
    lhip = KP0 + COCO.internal_names.index("left_hip")
    np.testing.assert_allclose(both[..., lhip], np.maximum(ha[..., lhip], hb[..., lhip]), atol=1e-7)
    limb = [k for k in range(30) if (COCO.limb_from[k], COCO.limb_to[k]) == (11, 12)][0]
    la, lb = ha[..., limb], hb[..., limb]
    inside_a, inside_b = la > 0, lb > 0
    expect = np.where(inside_a & inside_b, (la + lb) / 2, la + lb)
    np.testing.assert_allclose(both[..., limb], expect, atol=1e-6)
    assert (inside_a & inside_b).any() and (inside_a & ~inside_b).any()


def test_limb_band_box_and_floor():
    codec = BodyPartsCodec()
    # vertical Lhip -> Lkne at x = 101.5 (a cell-centre column), y from 80 to 180
    heat = codec.encode(_one_person(left_hip=(101.5, 80), left_knee=(101.5, 180)), (256, 256))["heatmaps"]
    limb = [k for k in range(30) if (COCO.limb_from[k], COCO.limb_to[k]) == (11, 12)][0]
    band = heat[..., limb]
    rows = np.flatnonzero(band.any(axis=1))
    cols = np.flatnonzero(band.any(axis=0))
    # box: round((80 - 4) / 4) = 19 .. round((180 + 4) / 4) = 46, x: round(97.5/4)=24 .. round(105.5/4)=26
    assert (rows[0], rows[-1], cols[0], cols[-1]) == (19, 46, 24, 26)
    assert band[19:47, 24:27].min() > 0                 # every box cell is set
    np.testing.assert_allclose(band[19:47, 25], 1.0, atol=1e-6)   # on the axis
    expect_side = math.exp(-16 / 98)                     # d = 4 px from the axis
    np.testing.assert_allclose(band[19:47, 24], expect_side, atol=1e-6)
    # a wide, flat limb: cells far from the line get the 0.01 floor
    heat = codec.encode(_one_person(left_hip=(40, 100), left_knee=(200, 140)), (256, 256))["heatmaps"]
    band = heat[..., limb]
    assert np.isclose(band[band > 0].min(), codec.config.limb_floor)
    # the band follows the infinite line, not the segment: corner cells of the box near
    # the line's extension beyond the end points are high, not floored
    assert band[24, 9] > 0.5


def test_neck_needs_both_shoulders():
    codec = BodyPartsCodec()
    both = _one_person(left_shoulder=(120, 100), right_shoulder=(80, 104), nose=(100, 70))
    heat = codec.encode(both, (256, 256))["heatmaps"]
    neck = heat[..., KP0 + NECK]
    # the peak is the cell whose centre 4q + 1.5 is nearest to the midpoint (100, 102)
    assert np.unravel_index(neck.argmax(), neck.shape) == (round(100.5 / 4), round(98.5 / 4))
    one = both.copy()
    one[0, LS, 2] = 0
    heat1 = codec.encode(one, (256, 256))["heatmaps"]
    assert heat1[..., KP0 + NECK].max() == 0
    neck_limbs = [k for k in range(30) if NECK in (COCO.limb_from[k], COCO.limb_to[k])]
    assert heat1[..., neck_limbs].max() == 0 and heat[..., neck_limbs].max() > 0.9
    # an occluded shoulder (v = 1) still makes a neck
    occl = both.copy()
    occl[0, LS, 2] = 1
    assert codec.encode(occl, (256, 256))["heatmaps"][..., KP0 + NECK].max() > 0.9


def test_person_mask_channel_and_loss_mask():
    codec = BodyPartsCodec()
    kp = _one_person(nose=(60, 60))
    full = codec.encode(kp, (128, 128), np.ones((128, 128), np.float32))["heatmaps"]
    np.testing.assert_array_equal(full[..., COCO.person_mask_channel], 1)  # edges not eroded
    holed = np.ones((128, 128), bool)
    holed[40:44, 80:84] = False                         # exactly cell (10, 20)
    ch = codec.encode(kp, (128, 128), holed)["heatmaps"][..., COCO.person_mask_channel]
    assert ch[9:12, 19:22].max() == 0 and ch.sum() == 32 * 32 - 9
    ignore = np.zeros((128, 128), np.float32)
    ignore[0:4, 0:2] = 1                                # half of cell (0, 0)
    mask = codec.encode(kp, (128, 128), ignore_mask=ignore)["mask"]
    assert mask.shape == (32, 32, 1)
    assert mask[0, 0, 0] == pytest.approx(round(255 / 2) / 255)  # uint8 rounding of 127.5
    assert mask[1:, :].min() == 1 and mask[0, 1:].min() == 1
    none = codec.encode(kp, (128, 128))
    assert none["heatmaps"][..., COCO.person_mask_channel].max() == 0
    np.testing.assert_array_equal(none["mask"], 1)


def test_mask_dtypes_agree():
    codec = BodyPartsCodec()
    rng = np.random.default_rng(5)
    m = rng.random((64, 64)) < 0.4
    outs = [codec.encode(np.zeros((0, 17, 3)), (64, 64), v, v)
            for v in (m, m.astype(np.uint8), m.astype(np.uint8) * 255, m.astype(np.float64), m[..., None])]
    for o in outs[1:]:
        np.testing.assert_array_equal(o["heatmaps"], outs[0]["heatmaps"])
        np.testing.assert_array_equal(o["mask"], outs[0]["mask"])


# ---------------------------------------------------------------------- pyramid
def test_pyramid_matches_tf_and_keras():
    tf = pytest.importorskip("tensorflow")
    import keras
    codec = BodyPartsCodec()
    rng = np.random.default_rng(3)
    kps, person, ignore = _random_scene(rng, 256, 256, 5)
    yy, xx = np.mgrid[:256, :256]
    # a disc and an odd-aligned box: cells fully, partly and not ignored
    ignore = ((xx - 100) ** 2 + (yy - 140) ** 2 < 45 ** 2) | ((xx > 170) & (xx < 233) & (yy > 21) & (yy < 83))
    targets = codec.encode(kps, (256, 256), person, ignore)
    levels = codec.pyramid(targets)
    heat = targets["heatmaps"][None]
    mask = targets["mask"][None]
    assert 0 < (mask < 1).mean() < 0.9
    for j, level in enumerate(levels):
        f = 2 ** j
        pooled = keras.layers.AveragePooling2D(f)(heat) if j else heat
        np.testing.assert_allclose(level["heatmaps"], np.asarray(pooled)[0], atol=1e-6)
        resized = tf.image.resize(mask, (64 // f, 64 // f), "bilinear", antialias=False).numpy()[0]
        resized[resized < codec.config.mask_cut] = 0
        np.testing.assert_allclose(level["mask"], resized, atol=1e-6)
        assert level["heatmaps"].shape == (64 // f, 64 // f, 50) and level["mask"].dtype == np.float32


def test_pyramid_mask_cut_keeps_exact_half():
    codec = BodyPartsCodec()
    ignore = np.zeros((128, 128), np.float32)
    ignore[0:4] = 1                                     # target row 0 fully ignored
    ignore[4, :64] = 1                                  # a quarter of row 1, left half
    levels = codec.pyramid(codec.encode(np.zeros((0, 17, 3)), (128, 128), ignore_mask=ignore))
    np.testing.assert_allclose(levels[0]["mask"][1, :16, 0], 191 / 255)   # uint8: round(191.25)
    # scale 1, row 0 = mean of rows 0 and 1: (0 + 191/255) / 2 < 0.5 -> 0; (0 + 1) / 2 = 0.5 stays
    np.testing.assert_array_equal(levels[1]["mask"][0, :8, 0], 0)
    np.testing.assert_array_equal(levels[1]["mask"][0, 8:, 0], 0.5)
    np.testing.assert_array_equal(levels[1]["mask"][1:], 1)


# -------------------------------------------------------------------- bad input
def test_nan_and_far_points_are_unlabelled_quietly():
    codec = BodyPartsCodec()
    rng = np.random.default_rng(9)
    kps, _, _ = _random_scene(rng, 256, 256, 4)
    kps[:, :, 2] = 2
    bad = kps.copy()
    bad[0, 3, 0] = np.nan
    bad[1, 5, 1] = np.inf
    bad[2, 9, :2] = 1e9
    bad[3, 12, :2] = (-1e30, 5)
    cleaned = kps.copy()
    cleaned[0, 3, 2] = cleaned[1, 5, 2] = cleaned[2, 9, 2] = cleaned[3, 12, 2] = 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = codec.encode(bad, (256, 256))["heatmaps"]
    assert np.isfinite(got).all()
    np.testing.assert_array_equal(got, codec.encode(cleaned, (256, 256))["heatmaps"])
    np.testing.assert_allclose(got, ref.encode_targets(codec, bad, (256, 256))["heatmaps"], atol=TOL)


def test_points_outside_the_image_are_clipped_not_dropped():
    codec = BodyPartsCodec()
    heat = codec.encode(_one_person(left_wrist=(-12.0, 100.0), left_elbow=(30, 90)), (256, 256))["heatmaps"]
    wrist = heat[..., KP0 + COCO.internal_names.index("left_wrist")]
    # centre column round(-3) = -3: columns 0..4 of the window remain
    assert np.flatnonzero(wrist.any(axis=0)).tolist() == [0, 1, 2, 3, 4]
    assert wrist[25, 0] == pytest.approx(math.exp(-((1.5 + 12) ** 2 + 1.5 ** 2) / 162), abs=1e-6)
    limb = [k for k in range(30) if (COCO.limb_from[k], COCO.limb_to[k]) == (6, 7)][0]
    assert heat[..., limb].max() > 0.9
    far = codec.encode(_one_person(left_wrist=(-40.0, 100.0)), (256, 256))["heatmaps"]
    assert far.max() == 0                               # window ends before column 0


def test_zero_length_limbs_are_skipped_without_noise(caplog, capsys):
    codec = BodyPartsCodec()
    kp = _one_person(left_hip=(100, 100), left_knee=(100, 100), left_ankle=(100, 150))
    with caplog.at_level(logging.DEBUG, logger="keras_pose.codecs._bp_encode"), warnings.catch_warnings():
        warnings.simplefilter("error")
        heat = codec.encode(kp, (256, 256))["heatmaps"]
    assert capsys.readouterr().out == ""
    assert all(r.levelno <= logging.DEBUG for r in caplog.records)
    hip_knee = [k for k in range(30) if (COCO.limb_from[k], COCO.limb_to[k]) == (11, 12)][0]
    knee_ankle = [k for k in range(30) if (COCO.limb_from[k], COCO.limb_to[k]) == (12, 13)][0]
    assert heat[..., hip_knee].max() == 0 and heat[..., knee_ankle].max() > 0.9


@pytest.mark.parametrize("empty", [np.zeros((0, 17, 3)), [], np.zeros((0,))])
def test_no_persons(empty):
    codec = BodyPartsCodec()
    out = codec.encode(empty, (128, 64))
    assert out["heatmaps"].shape == (32, 16, 50) and out["heatmaps"].max() == 0
    np.testing.assert_array_equal(out["mask"], np.ones((32, 16, 1), np.float32))
    assert [lv["heatmaps"].shape[:2] for lv in codec.pyramid(out)] == [(32, 16), (16, 8), (8, 4), (4, 2), (2, 1)]


@pytest.mark.parametrize("call, words", [
    (lambda c: c.encode(np.zeros((2, 18, 3)), (64, 64)), "keypoints"),
    (lambda c: c.encode(np.zeros((17, 3)), (64, 64)), "keypoints"),
    (lambda c: c.encode(np.zeros((1, 17, 2)), (64, 64)), "keypoints"),
    (lambda c: c.encode([["a"] * 3] * 17, (64, 64)), "keypoints"),
    (lambda c: c.encode(np.zeros((1, 17, 3)), (66, 64)), "stride"),
    (lambda c: c.encode(np.zeros((1, 17, 3)), (64,)), "image_size"),
    (lambda c: c.encode(np.zeros((1, 17, 3)), (64.5, 64)), "image_size"),
    (lambda c: c.encode(np.zeros((1, 17, 3)), (64, 64), np.zeros((32, 64))), "person_mask"),
    (lambda c: c.encode(np.zeros((1, 17, 3)), (64, 64), None, np.zeros((64, 64, 2))), "ignore_mask"),
    (lambda c: c.pyramid(c.encode(np.zeros((0, 17, 3)), (72, 64))), "multiple of 64"),
])
def test_bad_input_raises_one_clear_line(call, words):
    with pytest.raises(ValueError) as err:
        call(BodyPartsCodec())
    msg = str(err.value)
    assert words in msg and "\n" not in msg
