"""mobile_demo/demo.py on an image and a short video, its one-line errors; draw_poses; tracking."""
import importlib.util
import pathlib

import cv2
import numpy as np
import pytest

import _tiny_pose_model as tiny
from keras_pose.structures import Poses

REPO = pathlib.Path(__file__).resolve().parents[1]


def _demo():
    spec = importlib.util.spec_from_file_location("kp_demo", REPO / "mobile_demo" / "demo.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def exported():
    return tiny.trained_export()


def _frames(exported, n):
    return [cv2.resize(im.astype(np.uint8), (128, 128)) for im in exported["images"][:n]]


def _write_video(path, frames, fps=10):
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (128, 128))
    for f in frames:
        w.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    w.release()


def test_demo_on_an_image(exported, tmp_path, capsys):
    img = tmp_path / "in.jpg"
    cv2.imwrite(str(img), cv2.cvtColor(_frames(exported, 1)[0], cv2.COLOR_RGB2BGR))
    out = tmp_path / "out.png"
    assert _demo().main(["--model", str(exported["fp32"]), "--input", str(img),
                         "--output", str(out)]) == 0
    res = cv2.imread(str(out))
    assert res is not None and res.shape == (128, 128, 3)
    assert "1 frame(s)" in capsys.readouterr().out
    # Something was drawn (at least the FPS label).
    assert np.abs(res.astype(int) - cv2.imread(str(img)).astype(int)).sum() > 0


def test_demo_on_a_5_frame_video(exported, tmp_path, capsys):
    src, out = tmp_path / "in.mp4", tmp_path / "out.mp4"
    _write_video(src, _frames(exported, 5))
    assert _demo().main(["--model", str(exported["fp32"]), "--input", str(src),
                         "--output", str(out)]) == 0
    cap = cv2.VideoCapture(str(out))
    n = 0
    while cap.read()[0]:
        n += 1
    assert n == 5
    assert "5 frame(s)" in capsys.readouterr().out


def test_demo_errors_are_one_line(exported, tmp_path, capsys):
    demo = _demo()
    m = str(exported["fp32"])
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"garbage")
    assert demo.main(["--model", m, "--input", str(bad), "--output", str(tmp_path / "o.png")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("demo: ") and "bad.jpg" in err and "\n" not in err
    assert demo.main(["--model", m, "--input", "7", "--output", str(tmp_path / "o.mp4")]) == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "camera 7 is not available" in err
    assert demo.main(["--model", str(tmp_path / "none.tflite"), "--input", str(bad),
                      "--output", str(tmp_path / "o.png")]) == 1
    assert "not found" in capsys.readouterr().err


def test_demo_video_that_ends_early(exported, tmp_path, capsys):
    src = tmp_path / "cut.mp4"
    rng = np.random.default_rng(0)
    _write_video(src, [rng.integers(0, 255, (128, 128, 3), dtype=np.uint8) for _ in range(10)])
    d = bytearray(src.read_bytes())
    m, moov = d.find(b"mdat"), d.find(b"moov")
    a = (m + moov) // 2
    d[a:moov - 8] = bytes(moov - 8 - a)  # the second half of the frame data is lost
    src.write_bytes(bytes(d))
    out = tmp_path / "o.mp4"
    assert _demo().main(["--model", str(exported["fp32"]), "--input", str(src),
                         "--output", str(out)]) == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "ended early" in err and "of 10 frames" in err
    assert out.is_file()  # the frames read are kept


def test_draw_poses_draws_limbs_ids_and_fps():
    from keras_pose.visualize import draw_poses
    kp = np.zeros((1, 17, 3), np.float32)
    kp[0, 5] = (20, 20, 1)   # left shoulder
    kp[0, 7] = (20, 80, 1)   # left elbow: a vertical limb at x = 20
    img = np.zeros((100, 100, 3), np.uint8)
    out = draw_poses(img, Poses(kp, [1.0]), ids=[3], fps=9.5)
    assert out.shape == img.shape and img.sum() == 0  # the input is untouched
    assert out[50, 19:22].max() > 0                     # the limb
    assert out[50, 60:].max() == 0                      # nothing far from it
    assert out[5:25, 0:80].max() > 0                     # FPS text
    with pytest.raises(ValueError, match="ids"):
        draw_poses(img, Poses(kp, [1.0]), ids=[1, 2])
    empty = draw_poses(img, Poses.empty())
    assert empty.sum() == 0


def test_tracker_keeps_ids_when_order_changes_and_smooths():
    from keras_pose.tracking import OneEuroFilter, PoseTracker
    rng = np.random.default_rng(0)
    base = np.zeros((2, 17, 3), np.float32)
    base[..., 2] = 1
    base[0, :, :2] = rng.uniform(10, 60, (17, 2))
    base[1, :, :2] = rng.uniform(150, 200, (17, 2))
    tr = PoseTracker(beta=0.0)
    seen, jitter_in, jitter_out = {}, [], []
    prev = prev_raw = None
    for f in range(8):
        noise = rng.normal(0, 1.5, (2, 17, 2))
        kp = base.copy()
        kp[..., :2] += noise
        order = [1, 0] if f % 2 else [0, 1]
        sm, ids = tr.update(Poses(kp[order], [1, 1]), dt=1 / 30)
        for p, i in zip(order, ids):
            seen.setdefault(p, set()).add(int(i))
        if prev is not None and f > 2:
            jitter_out.append(np.abs(sm.keypoints[order.index(0), :, :2] - prev).mean())
            jitter_in.append(np.abs(kp[0, :, :2] - prev_raw).mean())
        prev, prev_raw = sm.keypoints[order.index(0), :, :2], kp[0, :, :2]
    assert seen[0] != seen[1] and len(seen[0]) == len(seen[1]) == 1
    assert np.mean(jitter_out) < 0.7 * np.mean(jitter_in)
    # A new person far away gets a new id; the filter passes a constant through.
    far = base[:1].copy()
    far[..., :2] += 500
    _, ids = tr.update(Poses(far, [1]))
    assert ids[0] == 2
    f = OneEuroFilter()
    assert np.allclose([f(np.array([3.0, 4.0])) for _ in range(3)][-1], [3, 4])
