"""Preprocessing (NumPy + cv2): image loading, letterbox geometry and bad inputs."""
import subprocess
import sys

import cv2
import numpy as np
import pytest

from keras_pose.geometry import letterbox, letterbox_to, resize_affine
from keras_pose.io import ImageReadError, load_image
from keras_pose.structures import apply_affine, invert_affine


def _dot_image(h, w, x, y, r=3):
    """Black image with a smooth Gaussian blob (sigma r) centred on pixel (x, y).

    Smooth, so that the point-sampling of a downscaling resize does not alias it.
    """
    ys, xs = np.mgrid[:h, :w]
    blob = 255 * np.exp(-((xs - x) ** 2 + (ys - y) ** 2) / (2.0 * r * r))
    return np.repeat(np.round(blob).astype(np.uint8)[..., None], 3, axis=2)


def _centroid(img, h, w):
    m = img[:h, :w, 0].astype(np.float64)
    m = np.where(m > 2, m, 0)
    ys, xs = np.mgrid[:h, :w]
    return np.array([(m * xs).sum() / m.sum(), (m * ys).sum() / m.sum()])


@pytest.mark.parametrize("hw,height", [((425, 640), 640), ((333, 500), 320), ((1000, 180), 256)])
def test_letterbox_geometry(hw, height):
    h, w = hw
    x, y = int(w * 0.3), int(h * 0.6)
    r = max(3.0, 3.0 * h / height)  # a blob that stays a few pixels wide after resizing
    out, m = letterbox(_dot_image(h, w, x, y, r), height=height)
    assert out.dtype == np.uint8 and out.shape[2] == 3
    assert out.shape[0] % 64 == 0 and out.shape[1] % 64 == 0
    new_h, new_w = round(h * height / h), round(w * height / h)
    assert out.shape[0] - new_h < 64 and out.shape[1] - new_w < 64
    np.testing.assert_allclose(m[0, 0], new_w / w)
    np.testing.assert_allclose(m[1, 1], height / h)
    # Padding: bottom/right only, value 128.
    assert np.all(out[new_h:] == 128) and np.all(out[:, new_w:] == 128)
    # The dot's centroid lands where M sends its centre (pixel-centre convention).
    np.testing.assert_allclose(_centroid(out, new_h, new_w), apply_affine([x, y], m), atol=0.15)
    # ...and comes back through the inverse.
    np.testing.assert_allclose(apply_affine(apply_affine([x, y], m), invert_affine(m)), [x, y], atol=1e-9)


def test_letterbox_max_size_guard():
    img = np.zeros((100, 4000, 3), np.uint8)
    out, m = letterbox(img, height=640)
    # 640/100 would make it 25600 wide: the 3800-wide guard wins.
    assert m[0, 0] == pytest.approx(38 / 40) and m[1, 1] == pytest.approx(95 / 100)
    assert out.shape == (128, 3840, 3)


def test_letterbox_to_fits_and_pads():
    h, w = 300, 500
    x, y = 120, 200
    out, m = letterbox_to(_dot_image(h, w, x, y), (192, 256))
    assert out.shape == (192, 256, 3)
    s = 256 / 500
    new_h = round(h * s)
    np.testing.assert_allclose([m[0, 0], m[1, 1]], [1.0 * 256 / 500, new_h / h])
    assert np.all(out[new_h:] == 128)
    np.testing.assert_allclose(_centroid(out, new_h, 256), apply_affine([x, y], m), atol=0.2)
    # Tall image: the height binds, padding on the right.
    out, m = letterbox_to(np.full((400, 100, 3), 7, np.uint8), (256, 192))
    assert out.shape == (256, 192, 3) and np.all(out[:, 64:] == 128) and np.all(out[:, :64] == 7)


def test_resize_affine_matches_cv2_resize_centres():
    # Upsampling a one-hot row by 4: the peak of pixel 2 lands at 4*2 + 1.5.
    row = np.zeros((1, 6), np.float32)
    row[0, 2] = 1
    up = cv2.resize(row, (24, 1), interpolation=cv2.INTER_LINEAR)[0]
    centre = (up * np.arange(24)).sum() / up.sum()
    assert centre == pytest.approx(apply_affine([2, 0], resize_affine(4, 1))[0])


def test_load_image_formats(tmp_path):
    rgb = np.zeros((8, 10, 3), np.uint8)
    rgb[..., 0] = 200  # red
    cv2.imwrite(str(tmp_path / "c.png"), rgb[..., ::-1])
    out = load_image(tmp_path / "c.png")
    assert out.shape == (8, 10, 3) and out.dtype == np.uint8
    assert np.all(out[..., 0] == 200) and np.all(out[..., 2] == 0)  # RGB, not BGR
    cv2.imwrite(str(tmp_path / "g.png"), np.full((5, 6), 77, np.uint8))
    g = load_image(str(tmp_path / "g.png"))
    assert g.shape == (5, 6, 3) and np.all(g == 77)
    rgba = np.dstack([rgb[..., ::-1], np.full((8, 10), 9, np.uint8)])  # BGRA on disk
    cv2.imwrite(str(tmp_path / "a.png"), rgba)
    np.testing.assert_array_equal(load_image(tmp_path / "a.png"), out)
    cv2.imwrite(str(tmp_path / "d.png"), np.full((4, 4, 3), 65535, np.uint16))
    d = load_image(tmp_path / "d.png")
    assert d.dtype == np.uint8 and np.all(d == 255)
    # Arrays are taken as RGB already; bytes are decoded.
    np.testing.assert_array_equal(load_image(rgb), rgb)
    np.testing.assert_array_equal(load_image((tmp_path / "c.png").read_bytes()), out)
    assert load_image(np.full((3, 3), 1.0, np.float32)).shape == (3, 3, 3)


def test_load_image_bad_files(tmp_path):
    with pytest.raises(ImageReadError, match="missing.jpg"):
        load_image(tmp_path / "missing.jpg")
    (tmp_path / "empty.jpg").write_bytes(b"")
    with pytest.raises(ImageReadError, match="empty.jpg.*0 bytes"):
        load_image(tmp_path / "empty.jpg")
    (tmp_path / "bad.jpg").write_bytes(b"this is not a jpeg at all" * 10)
    with pytest.raises(ImageReadError, match="bad.jpg.*not a decodable"):
        load_image(tmp_path / "bad.jpg")
    with pytest.raises(ImageReadError, match="shape"):
        load_image(np.zeros((4, 4, 2), np.uint8))
    with pytest.raises(ImageReadError):
        load_image(12)
    assert issubclass(ImageReadError, ValueError)


def test_load_real_sample(coco_sample_dir):
    img = load_image(coco_sample_dir / "000000000785.jpg")
    assert img.shape == (425, 640, 3)
    out, m = letterbox(img)
    assert out.shape == (640, 1024, 3)


def test_preprocess_imports_without_tensorflow():
    code = ("import sys; import keras_pose.inference; from keras_pose.geometry import letterbox; "
            "from keras_pose.io import load_image; "
            "assert 'tensorflow' not in sys.modules, 'tensorflow imported'")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
