"""Top-down crops: centre/scale, UDP affine, warping, mirror, augmentation, bad boxes."""
import numpy as np
import pytest

from keras_pose.data.crops import (CropAugmentConfig, box_problem, box_to_center_scale,
                                   crop_affine, random_crop_params, topdown_crop,
                                   transform_keypoints, warp_crop)
from keras_pose.skeleton import COCO
from keras_pose.structures import apply_affine, invert_affine

OUT = (256, 192)   # (H, W)


def test_center_scale_grows_the_short_side_and_pads():
    c, s = box_to_center_scale([10, 20, 30, 100], aspect_ratio=0.75, padding=1.25)
    np.testing.assert_allclose(c, [25, 70])
    np.testing.assert_allclose(s, [75 * 1.25, 100 * 1.25])      # too narrow -> widened
    c, s = box_to_center_scale([0, 0, 150, 100], aspect_ratio=0.75, padding=1.0)
    np.testing.assert_allclose(s, [150, 200])                    # too wide -> taller


def test_udp_affine_maps_box_extent_onto_size_minus_one():
    center, scale = np.array([300.0, 200.0]), np.array([150.0, 200.0])
    m = crop_affine(center, scale, 0.0, OUT)
    corners = np.array([[225.0, 100.0], [375.0, 300.0], [300.0, 200.0]])
    np.testing.assert_allclose(apply_affine(corners, m), [[0, 0], [191, 255], [95.5, 127.5]], atol=1e-9)
    # Rotation keeps the centre fixed; the inverse undoes everything.
    mr = crop_affine(center, scale, 30.0, OUT, flip=True)
    np.testing.assert_allclose(apply_affine(center, mr), [95.5, 127.5], atol=1e-9)
    pts = np.random.default_rng(0).uniform(0, 500, (10, 2))
    np.testing.assert_allclose(apply_affine(apply_affine(pts, mr), invert_affine(mr)), pts, atol=1e-9)


def test_warp_puts_a_blob_where_the_affine_says():
    img = np.zeros((300, 400, 3), np.uint8)
    yy, xx = np.mgrid[:300, :400]
    blob = np.exp(-((xx - 151.3) ** 2 + (yy - 122.6) ** 2) / (2 * 3.0 ** 2))
    img[..., 1] = (blob * 255).astype(np.uint8)
    m = crop_affine([160, 130], [120, 160], 20.0, OUT)
    crop = warp_crop(img, m, OUT)
    assert crop.shape == (256, 192, 3) and crop.dtype == np.uint8
    g = crop[..., 1].astype(np.float64)
    cy, cx = np.mgrid[:256, :192]
    centroid = np.array([(g * cx).sum(), (g * cy).sum()]) / g.sum()
    np.testing.assert_allclose(centroid, apply_affine([151.3, 122.6], m), atol=0.3)


def test_mirrored_crop_is_the_flipped_crop_with_swapped_joints():
    rng = np.random.default_rng(3)
    # Smooth image: cv2 quantises sample positions to 1/32 px, so pixel noise would
    # show that rounding; on a smooth image the mirror must agree within ~1 level.
    yy, xx = np.mgrid[:240, :320]
    img = np.stack([xx * 0.7, yy * 0.9, 128 + 100 * np.sin(xx / 9.0) * np.cos(yy / 7.0)], -1)
    img = img.astype(np.uint8)
    kp = np.zeros((17, 3))
    kp[:, :2] = rng.uniform(60, 200, (17, 2))
    kp[:, 2] = 2
    kp[4] = 0                                            # unlabelled stays zero
    box = [50, 40, 160, 170]
    crop, kpc, m = topdown_crop(img, kp, box, OUT)
    aug = CropAugmentConfig(rotation=0.0, scale=0.0, flip_prob=1.0)
    fcrop, fkp, fm = topdown_crop(img, kp, box, OUT, flip_perm=COCO.flip_perm,
                                  rng=np.random.default_rng(0), augment=aug)
    # UDP mirror: the same sample positions, mirrored (an HRNet-style crop would be 1 px off).
    diff = np.abs(fcrop.astype(int) - crop[:, ::-1].astype(int))
    assert diff.max() <= 2 and diff.mean() < 0.3, (diff.max(), diff.mean())
    expect = kpc.copy()
    expect[:, 0] = np.where(kpc[:, 2] > 0, 191 - kpc[:, 0], 0)
    np.testing.assert_allclose(fkp, expect[COCO.flip_perm], atol=1e-9)
    assert np.all(fkp[COCO.flip_perm[4]] == 0)
    with pytest.raises(ValueError, match="flip_perm"):
        topdown_crop(img, kp, box, OUT, rng=np.random.default_rng(0), augment=aug)


def test_augmentation_draws_stay_in_range():
    aug = CropAugmentConfig()
    rng = np.random.default_rng(1)
    draws = np.array([random_crop_params(rng, aug) for _ in range(2000)], dtype=np.float64)
    s, r, f = draws.T
    assert s.min() >= 0.7 and s.max() <= 1.3 and s.std() > 0.15
    assert np.abs(r).max() <= 40.0
    assert 0.5 < np.mean(r != 0) < 0.7            # rotation probability 0.6
    assert 0.45 < f.mean() < 0.55
    with pytest.raises(ValueError, match="flip_prob"):
        CropAugmentConfig(flip_prob=2.0).validate()


@pytest.mark.parametrize("box, why", [
    ([10, 10, 0, 50], "zero or negative"),
    ([10, 10, -5, 50], "zero or negative"),
    ([np.nan, 10, 20, 50], "NaN"),
    ([700, 10, 20, 50], "outside"),
    ([-100, 10, 50, 50], "outside"),
    ([1, 2, 3], "4 numbers"),
])
def test_bad_boxes_are_named_not_crashed_on(box, why):
    assert why in box_problem(box, image_size=(480, 640))
    with pytest.raises(ValueError, match="box_to_center_scale"):
        box_to_center_scale(box if why != "outside" else [0, 0, 0, 0], 0.75)


def test_good_box_partly_outside_is_fine():
    assert box_problem([-20, -10, 100, 100], image_size=(480, 640)) is None
    kp = transform_keypoints(np.array([[5.0, 6.0, 1.0], [0, 0, 0]]), [[2, 0, 1], [0, 2, 0]])
    np.testing.assert_allclose(kp, [[11, 12, 1], [0, 0, 0]])
