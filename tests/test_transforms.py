"""Augmentation: the §2.2 affine, keypoints riding on the image content, flip, tint."""
import subprocess
import sys

import cv2
import numpy as np
import pytest

from keras_pose.data.transforms import (AugmentConfig, AugmentParams, BORDER_RGB, apply_affine_to_sample,
                                        augment_params, hsv_tint, training_affine)
from keras_pose.skeleton import COCO
from keras_pose.structures import apply_affine, invert_affine

COLOURS = np.array([[(37 * k) % 200 + 40, (91 * k) % 200 + 40, (53 * k + 100) % 200 + 40]
                    for k in range(17)], np.uint8)


def _dot_image(rng, h=300, w=400):
    """A grey image with one distinct coloured disc per keypoint of one person."""
    img = np.full((h, w, 3), 10, np.uint8)
    kp = np.zeros((1, 17, 3), np.float32)
    pts = []
    while len(pts) < 17:   # well separated centres
        p = rng.uniform([40, 40], [w - 40, h - 40])
        if all(np.hypot(*(p - q)) > 30 for q in pts):
            pts.append(p)
    for k, (x, y) in enumerate(pts):
        cv2.circle(img, (int(round(x)), int(round(y))), 9, COLOURS[k].tolist(), -1)
        kp[0, k] = (round(x), round(y), 2)
    return img, kp


def test_defaults_and_validation():
    c = AugmentConfig()
    assert (c.flip_prob, c.tint_prob, c.max_rotation, c.scale_prob, c.scale_min, c.scale_max,
            c.max_shift, c.target_dist) == (0.5, 0.2, 40.0, 0.8, 0.7, 1.3, 50.0, 0.6)
    assert AugmentConfig.from_dict(c.to_dict()) == c
    with pytest.raises(ValueError, match="flip_prob"):
        c.replace(flip_prob=1.5)


def test_param_distribution():
    rng = np.random.default_rng(0)
    ps = [augment_params(rng) for _ in range(4000)]
    flips = np.mean([p.flip for p in ps])
    tints = np.mean([p.tint for p in ps])
    unscaled = np.mean([p.scale == 1.0 for p in ps])
    assert abs(flips - 0.5) < 0.03 and abs(tints - 0.2) < 0.03 and abs(unscaled - 0.2) < 0.03
    rot = np.array([p.rotation for p in ps])
    sc = np.array([p.scale for p in ps if p.scale != 1.0])
    sh = np.array([(p.dx, p.dy) for p in ps])
    assert -40 <= rot.min() < -38 and 38 < rot.max() <= 40
    assert 0.7 <= sc.min() < 0.72 and 1.28 < sc.max() <= 1.3
    assert np.abs(sh).max() <= 49 and sh.dtype.kind == "i"   # truncated toward 0
    # same seed -> same draws
    assert augment_params(np.random.default_rng(5)) == augment_params(np.random.default_rng(5))


def test_affine_matches_formula():
    H, W = 384, 512
    p = AugmentParams(flip=False, rotation=0.0, scale=1.0, dx=0, dy=0)
    M = training_affine((100.0, 80.0), 0.5, p, (H, W))
    # centre goes to the input centre; a person of height 0.5*H maps to 0.6*(H-1)
    np.testing.assert_allclose(apply_affine([[100.0, 80.0]], M), [[W / 2 - 0.5, H / 2 - 0.5]])
    top, bot = apply_affine([[100.0, 80.0 - 96], [100.0, 80.0 + 96]], M)
    assert bot[1] - top[1] == pytest.approx(0.6 * (H - 1))
    # rotation by +90 deg with R = [[c, s], [-s, c]]: a point to the right goes up
    p90 = AugmentParams(rotation=90.0, dx=3, dy=-7)
    M90 = training_affine((0.0, 0.0), 0.5, p90, (H, W))
    s = 0.6 / (0.5 * H / (H - 1))
    np.testing.assert_allclose(apply_affine([[10.0, 0.0]], M90), [[W / 2 - 0.5 + 3, H / 2 - 0.5 - 7 - 10 * s]], atol=1e-9)
    # flip mirrors about the input centre column
    Mf = training_affine((100.0, 80.0), 0.5, AugmentParams(flip=True), (H, W))
    a, b = apply_affine([[110.0, 80.0]], M)[0], apply_affine([[110.0, 80.0]], Mf)[0]
    assert a[0] + b[0] == pytest.approx(W - 1) and a[1] == pytest.approx(b[1])
    with pytest.raises(ValueError, match="scale_provided"):
        training_affine((0, 0), 0.0, p, (H, W))


@pytest.mark.parametrize("flip", [False, True])
def test_keypoints_land_on_the_same_content(flip):
    rng = np.random.default_rng(1)
    img, kp = _dot_image(rng)
    params = AugmentParams(flip=flip, rotation=27.0, scale=1.2, dx=-13, dy=21)
    M = training_affine((200.0, 150.0), 0.7, params, (256, 320))
    out = apply_affine_to_sample(img, kp, None, None, M, flip, COCO, out_size=(256, 320))
    assert out.image.shape == (256, 320, 3) and out.image.dtype == np.uint8
    assert out.record.flip == flip and out.record.out_size == (256, 320)
    np.testing.assert_allclose(out.record.matrix, M)
    perm = COCO.flip_perm if flip else np.arange(17)
    checked = 0
    for k in range(17):
        x, y, v = out.keypoints[0, k]
        assert v == 2
        if not (3 <= x < 317 and 3 <= y < 253):
            continue
        # keypoint k now sits on the disc drawn for keypoint perm[k]
        got = out.image[int(round(y)), int(round(x))].astype(int)
        np.testing.assert_allclose(got, COLOURS[perm[k]], atol=3)
        checked += 1
    assert checked >= 10
    # and the inverse record maps them back to the original positions
    back = apply_affine(out.keypoints[0, :, :2], invert_affine(out.record.matrix))
    np.testing.assert_allclose(back, kp[0, perm, :2], atol=1e-3)


def test_borders_and_masks():
    img = np.full((100, 100, 3), 200, np.uint8)
    pm = np.ones((100, 100), np.uint8)
    ig = np.ones((100, 100), np.uint8)
    # shrink the image into the middle: outside is border
    M = np.array([[0.5, 0, 50], [0, 0.5, 50]], np.float64)
    out = apply_affine_to_sample(img, np.zeros((0, 17, 3)), pm, ig, M, False, out_size=(200, 200))
    assert tuple(out.image[0, 0]) == BORDER_RGB and tuple(out.image[75, 75]) == (200, 200, 200)
    assert out.person_mask.dtype == np.uint8 and out.person_mask.shape == (200, 200)
    assert out.person_mask[0, 0] == 0 and out.ignore_mask[0, 0] == 0   # border: no person, not ignored
    assert out.person_mask[75, 75] == 255 and out.ignore_mask[75, 75] == 255
    # the edge of the warped region is fractional (bilinear), like the 0/255 original
    half = apply_affine_to_sample(img, np.zeros((0, 17, 3)), pm, ig, M + [[0, 0, 0.25], [0, 0, 0.25]],
                                  False, out_size=(200, 200))
    assert 0 < half.person_mask[50, 75] < 255
    assert out.keypoints.shape == (0, 17, 3)
    only_ignore = apply_affine_to_sample(img, np.zeros((1, 17, 3)), None, ig, M, False, out_size=(200, 200))
    assert only_ignore.person_mask is None and only_ignore.ignore_mask[75, 75] == 255
    # float and bool masks are accepted too
    f = apply_affine_to_sample(img, np.zeros((0, 17, 3)), pm.astype(bool), ig * 0.5, M, False, out_size=(200, 200))
    assert f.person_mask[75, 75] == 255 and f.ignore_mask[75, 75] in (127, 128)


def test_nan_and_far_keypoints():
    kp = np.zeros((1, 17, 3), np.float32)
    kp[0, 0] = (np.nan, 5, 2)
    kp[0, 1] = (1e5, -1e5, 1)
    kp[0, 2] = (7, 7, 0)
    M = np.array([[1, 0, 3], [0, 1, 4]], np.float64)
    out = apply_affine_to_sample(np.zeros((20, 20, 3), np.uint8), kp, None, None, M, False)
    np.testing.assert_array_equal(out.keypoints[0, 0], [0, 0, 0])          # NaN -> unlabelled
    np.testing.assert_allclose(out.keypoints[0, 1], [1e5 + 3, -1e5 + 4, 1])  # far: kept, codec clips
    np.testing.assert_array_equal(out.keypoints[0, 2], [0, 0, 0])          # unlabelled stays (0, 0, 0)
    assert np.isfinite(out.keypoints).all()


def test_bad_arguments_are_named():
    M = np.eye(2, 3)
    with pytest.raises(ValueError, match="image must be"):
        apply_affine_to_sample(np.zeros((8, 8), np.uint8), [], None, None, M, False)
    with pytest.raises(ValueError, match="M must be"):
        apply_affine_to_sample(np.zeros((8, 8, 3), np.uint8), [], None, None, np.eye(3), False)
    with pytest.raises(ValueError, match="keypoints must be"):
        apply_affine_to_sample(np.zeros((8, 8, 3), np.uint8), np.zeros((2, 17, 2)), None, None, M, False)
    out = apply_affine_to_sample(np.zeros((8, 8, 3), np.uint8), [], None, None, M, False)
    assert out.keypoints.shape == (0, 17, 3)


def test_hsv_tint():
    rng = np.random.default_rng(3)
    img = rng.integers(30, 220, (32, 48, 3), dtype=np.uint8)
    out = hsv_tint(img, np.random.default_rng(7))
    assert out.shape == img.shape and out.dtype == np.uint8
    assert not np.array_equal(out, img)
    np.testing.assert_array_equal(out, hsv_tint(img, np.random.default_rng(7)))
    # the §2.2 formula, written out: shift each HSV channel, clip H to 179 and S, V to 255
    for seed in range(4):
        hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV).astype(int)
        r = np.random.default_rng(seed)
        d = [r.integers(-10, 11), r.integers(-20, 61), r.integers(-20, 41)]
        want = np.stack([np.clip(hsv[..., k] + d[k], 0, top) for k, top in enumerate((179, 255, 255))], -1)
        want = cv2.cvtColor(want.astype(np.uint8), cv2.COLOR_HSV2RGB)
        np.testing.assert_array_equal(hsv_tint(img, np.random.default_rng(seed)), want)
    # zero ranges leave the image as the HSV round trip does
    still = hsv_tint(img, rng, AugmentConfig(hue_range=(0, 0), sat_range=(0, 0), val_range=(0, 0)))
    assert np.abs(still.astype(int) - img).max() <= 8


def test_imports_without_tensorflow():
    # the bottom-up pipeline module too: TensorFlow loads only when a dataset is built
    code = ("import sys, keras_pose.data as d;"
            "[getattr(d, n) for n in ('CocoKeypoints', 'AugmentConfig', 'apply_affine_to_sample',"
            " 'hsv_tint', 'BottomUpLoader', 'bottom_up_dataset')];"
            "assert 'tensorflow' not in sys.modules, 'tensorflow imported'")
    subprocess.run([sys.executable, "-c", code], check=True)
