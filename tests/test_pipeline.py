"""Bottom-up tf.data pipeline: determinism, shapes, target/mask consistency, bad images."""
import json
import shutil

import cv2
import numpy as np
import pytest

from keras_pose.codecs import BodyPartsCodec
from keras_pose.data.coco import CocoKeypoints
from keras_pose.data.pipeline import BottomUpLoader
from keras_pose.data.transforms import AugmentConfig, training_affine
from keras_pose.structures import apply_affine

SIZE = 128  # smallest input for 5 scales (/4 ... /64)


@pytest.fixture(scope="module")
def source(coco_sample_dir):
    return CocoKeypoints(coco_sample_dir / "test_coco.json", coco_sample_dir)


@pytest.fixture(scope="module")
def codec():
    return BodyPartsCodec()


@pytest.fixture(scope="module")
def tf():
    return pytest.importorskip("tensorflow")


def _batches(ds, n):
    return [(x.numpy(), [t.numpy() for t in y]) for x, y in ds.take(n)]


def test_same_seed_same_batches(tf, source, codec):
    from keras_pose.data.pipeline import bottom_up_dataset
    make = lambda seed: bottom_up_dataset(source, codec, SIZE, 3, seed=seed, deterministic=True,
                                          num_parallel_calls=2)
    a, b, c = _batches(make(7), 2), _batches(make(7), 2), _batches(make(8), 2)
    for (xa, ya), (xb, yb) in zip(a, b):
        np.testing.assert_array_equal(xa, xb)
        for ta, tb in zip(ya, yb):
            np.testing.assert_array_equal(ta, tb)
    assert not np.array_equal(a[0][0], c[0][0])


def test_start_index_resumes_the_stream(tf, source, codec, coco_sample_dir):
    from keras_pose.data.pipeline import bottom_up_dataset
    full = _batches(bottom_up_dataset(source, codec, SIZE, 2, seed=4, deterministic=True), 8)
    # 14 samples later = epoch 1, position 2; a path source works too
    resumed = _batches(bottom_up_dataset(coco_sample_dir / "test_coco.json", codec, SIZE, 2, seed=4,
                                         deterministic=True, start_index=14), 1)
    np.testing.assert_array_equal(resumed[0][0], full[7][0])


def test_shapes_dtypes_and_target_consistency(tf, source, codec):
    from keras_pose.data.pipeline import bottom_up_dataset
    ds = bottom_up_dataset(source, codec, SIZE, 4, shuffle=False, deterministic=True, repeat=False)
    assert ds.element_spec[0].shape.as_list() == [4, SIZE, SIZE, 3]
    assert [s.shape.as_list() for s in ds.element_spec[1]] == \
        [[4, SIZE // 4 >> j, SIZE // 4 >> j, codec.spec.num_channels + 1] for j in range(5)]
    batches = _batches(ds, 10)
    assert len(batches) == 3                       # 12 samples, drop_remainder
    loader = ds.loader
    x, ts = batches[0]
    assert x.dtype == np.float32 and 0 <= x.min() and x.max() <= 255 and x.max() > 100
    c = codec.spec.num_channels
    for j, t in enumerate(ts):
        assert t.dtype == np.float32 and 0 <= t.min() and t.max() <= 1
        mask = t[..., c]
        assert set(np.unique(mask[mask < 0.5])) <= {0.0}   # cut below 0.5
        if j:   # heatmaps at scale j are 2^j x 2^j means of scale 0
            f = 2 ** j
            h = ts[0].shape[1] // f
            pooled = ts[0][..., :c].reshape(4, h, f, h, f, c).mean(axis=(2, 4))
            np.testing.assert_allclose(t[..., :c], pooled, atol=1e-5)
    # element i of the unshuffled first epoch is loader sample i
    ok, img, ref = loader.load(0, 1)
    assert ok
    np.testing.assert_array_equal(x[1], img.astype(np.float32))
    for t, r in zip(ts, ref):
        np.testing.assert_array_equal(t[1], r)


def test_keypoint_peaks_follow_the_augmentation(source, codec):
    loader = BottomUpLoader(source, codec, 256, augment=True, seed=3)
    k0 = codec.spec.keypoint_start
    checked = 0
    for idx in range(len(loader)):
        s = loader.samples[idx]
        p = loader.params(5, idx)
        ok, img, ts = loader.load(5, idx)
        M = training_affine(s.objpos, s.scale_provided, p, (256, 256))
        kp = s.keypoints[0]
        internal = codec.spec.to_internal(s.keypoints[:1])[0]
        if p.flip:   # left/right swap of the internal order
            internal = internal[codec.spec.internal_flip_perm]
        xy = apply_affine(internal[:, :2], M)
        for j, (x, y) in enumerate(xy):
            if internal[j, 2] > 0 and 8 <= x < 248 and 8 <= y < 248:
                cell = ts[0][int(round((y - 1.5) / 4)), int(round((x - 1.5) / 4))]
                assert cell[k0 + j] > 0.8, (idx, j)
                checked += 1
        assert kp.shape == (17, 3)
    assert checked > 50


def test_ignore_mask_reaches_the_targets(source, codec):
    # image 40083 has a person without keypoints: its region is masked out
    loader = BottomUpLoader(source, codec, 256, augment=False)
    idx = next(i for i, s in enumerate(loader.samples) if s.image_id == 40083 and s.main_index == 1)
    ok, img, ts = loader.load(0, idx)
    mask = ts[0][..., codec.spec.num_channels]
    assert ok and mask.min() == 0.0 and mask.mean() > 0.9
    idx785 = next(i for i, s in enumerate(loader.samples) if s.image_id == 785)
    assert loader.load(0, idx785)[2][0][..., codec.spec.num_channels].min() == 1.0
    # the person-mask channel covers the persons (a good part of a centred crop)
    pm = ts[0][..., codec.spec.person_mask_channel]
    assert pm.max() == 1.0 and 0.05 < (pm > 0.5).mean() < 0.9


# ------------------------------------------------------------------ bad images
def _one_image_set(tmp_path, coco_sample_dir, image_id=40083, file_name=None):
    data = json.loads((coco_sample_dir / "test_coco.json").read_text())
    img = next(i for i in data["images"] if i["id"] == image_id)
    data["images"] = [img]
    data["annotations"] = [a for a in data["annotations"] if a["image_id"] == image_id]
    src = coco_sample_dir / img["file_name"]
    if file_name:
        img["file_name"] = file_name
    (tmp_path / "ann.json").write_text(json.dumps(data))
    shutil.copy(src, tmp_path / img["file_name"])
    return tmp_path / img["file_name"], cv2.imread(str(src))


def _write(path, kind, bgr):
    if kind == "gray":
        cv2.imwrite(str(path), cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY))
    elif kind == "rgba":
        cv2.imwrite(str(path), np.dstack([bgr, np.full(bgr.shape[:2], 200, np.uint8)]))
    elif kind == "png16":
        cv2.imwrite(str(path), bgr.astype(np.uint16) * 257)
    elif kind == "missing":
        path.unlink()
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "corrupt":
        path.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg" * 50)
    elif kind == "wrong_size":
        cv2.imwrite(str(path), bgr[:100])


@pytest.mark.parametrize("kind,name", [("gray", "x.png"), ("rgba", "x.png"), ("png16", "x.png")])
def test_convertible_images_are_used(tmp_path, coco_sample_dir, codec, kind, name):
    from keras_pose.data.transforms import apply_affine_to_sample, augment_params, hsv_tint
    path, bgr = _one_image_set(tmp_path, coco_sample_dir, file_name=name)
    _write(path, kind, bgr)
    loader = BottomUpLoader(CocoKeypoints(tmp_path / "ann.json", tmp_path), codec, SIZE, seed=1)
    for index in range(len(loader)):
        ok, img, ts = loader.load(0, index)
        assert ok and loader.num_bad == 0 and img.shape == (SIZE, SIZE, 3) and img.dtype == np.uint8
        # the same pixels warped by hand: gray is replicated, alpha dropped, 16-bit / 257
        ref = bgr if kind != "gray" else cv2.cvtColor(cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)
        ref = cv2.cvtColor(ref, cv2.COLOR_BGR2RGB)
        rng = loader._rng(0, index)
        p = augment_params(rng, loader.augment_config)
        if p.tint:
            ref = hsv_tint(ref, rng, loader.augment_config)
        s = loader.samples[index]
        M = training_affine(s.objpos, s.scale_provided, p, (SIZE, SIZE))
        want = apply_affine_to_sample(ref, s.keypoints, None, None, M, p.flip, out_size=(SIZE, SIZE)).image
        np.testing.assert_array_equal(img, want)


def test_gray_jpeg_is_used(tmp_path, coco_sample_dir, codec):
    from keras_pose.data.transforms import BORDER_RGB
    path, bgr = _one_image_set(tmp_path, coco_sample_dir)
    _write(path, "gray", bgr)
    loader = BottomUpLoader(CocoKeypoints(tmp_path / "ann.json", tmp_path), codec, SIZE,
                            augment_config=AugmentConfig(tint_prob=0.0))
    ok, img, ts = loader.load(0, 0)
    content = ~(img == BORDER_RGB).all(-1)
    assert ok and content.mean() > 0.3
    px = img[content].astype(int)
    # grey everywhere except where bilinear blends in the (127, 127, 124) border
    assert (px[:, 0] == px[:, 1]).all() and np.abs(px[:, 0] - px[:, 2]).max() <= 3
    assert (px[:, 0] == px[:, 2]).mean() > 0.98


@pytest.mark.parametrize("kind", ["missing", "empty", "corrupt", "wrong_size"])
def test_broken_images_are_skipped_and_counted(tmp_path, coco_sample_dir, codec, caplog, kind):
    path, bgr = _one_image_set(tmp_path, coco_sample_dir)
    source = CocoKeypoints(tmp_path / "ann.json", tmp_path)   # file present at scan time
    _write(path, kind, bgr)
    loader = BottomUpLoader(source, codec, SIZE)
    with caplog.at_level("WARNING", logger="keras_pose.data.pipeline"):
        ok, img, ts = loader.load(0, 0)
        ok2, *_ = loader.load(0, 1)
    assert not ok and not ok2 and loader.num_bad == 2
    assert "skipping sample 0" in caplog.text and str(path.name) in caplog.text
    assert img.shape == (SIZE, SIZE, 3) and [t.shape for t in ts] == loader.target_shapes
    caplog.clear()
    with caplog.at_level("WARNING", logger="keras_pose.data.pipeline"):
        assert not loader.load(1, 0)[0]          # next epoch: counted, not logged again
    assert loader.num_bad == 3 and loader.bad_indices == {0, 1} and caplog.text == ""


def test_dataset_replaces_bad_samples(tf, tmp_path, coco_sample_dir, codec, caplog):
    from keras_pose.data.pipeline import bottom_up_dataset
    data = json.loads((coco_sample_dir / "test_coco.json").read_text())
    for img in data["images"]:
        shutil.copy(coco_sample_dir / img["file_name"], tmp_path / img["file_name"])
    (tmp_path / "ann.json").write_text(json.dumps(data))
    source = CocoKeypoints(tmp_path / "ann.json", tmp_path)
    (tmp_path / "000000197388.jpg").write_bytes(b"garbage")     # samples 7..11 of 12
    with caplog.at_level("WARNING", logger="keras_pose.data.pipeline"):
        ds = bottom_up_dataset(source, codec, SIZE, 1, repeat=False, shuffle=False, deterministic=True)
        xs = [x.numpy()[0] for x, _ in ds]
    assert len(xs) == 12 and ds.loader.num_bad == 5 and ds.loader.bad_indices == {7, 8, 9, 10, 11}
    # each broken sample became the next readable one (wrapping to sample 0)
    for i in range(7, 12):
        np.testing.assert_array_equal(xs[i], xs[0])
    assert caplog.text.count("000000197388.jpg") == 5   # logged once per sample
    # a long repeated run keeps going past them, with full batches
    ds = bottom_up_dataset(source, codec, SIZE, 4, repeat=True)
    assert sum(x.shape[0] for x, _ in ds.take(5)) == 20


def test_all_images_broken_is_one_clear_error(tmp_path, coco_sample_dir, codec):
    path, bgr = _one_image_set(tmp_path, coco_sample_dir)
    source = CocoKeypoints(tmp_path / "ann.json", tmp_path)
    path.write_bytes(b"")
    loader = BottomUpLoader(source, codec, SIZE)
    with pytest.raises(ValueError, match="none of the 2 samples .* readable image"):
        loader.load_batch([0], [0])


def test_sharding_with_input_context(tf, source, codec):
    from keras_pose.data.pipeline import bottom_up_dataset
    firsts = []
    for k in range(2):
        ctx = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=k, num_replicas_in_sync=2)
        ds = bottom_up_dataset(source, codec, SIZE, 4, shuffle=False, repeat=False,
                               deterministic=True, input_context=ctx)
        batches = _batches(ds, 10)
        assert len(batches) == 3 and batches[0][0].shape[0] == 2   # 6 samples, per-replica batch 2
        firsts.append(batches[0][0][0])
        np.testing.assert_array_equal(batches[0][0][0], ds.loader.load(0, k)[1])
    assert not np.array_equal(*firsts)


def test_eval_dataset(tf, source):
    from keras_pose.data.pipeline import bottom_up_eval_dataset
    from keras_pose.geometry import letterbox_to
    from keras_pose.io import load_image
    ds = bottom_up_eval_dataset(source, (192, 256), batch_size=3)
    batches = list(ds)
    assert [b[0].shape[0] for b in batches] == [3, 1]
    x, m, ids = batches[0]
    assert x.dtype == tf.float32 and m.shape == (3, 2, 3) and ids.dtype == tf.int64
    rec = source.record(int(ids[0]))
    want, want_m = letterbox_to(load_image(rec.path), (192, 256))
    np.testing.assert_array_equal(x[0].numpy(), want.astype(np.float32))
    np.testing.assert_allclose(m[0].numpy(), want_m, rtol=1e-6)


def test_reads_the_synthetic_dataset(tmp_path, codec):
    from keras_pose.data.synthetic import generate_dataset
    generate_dataset(tmp_path, num_train=6, num_val=2, seed=0, image_size=(128, 128), progress=False)
    source = CocoKeypoints.from_dir(tmp_path, "train")
    assert len(source) == 6 and source.num_annotations > 0 and source.missing_images == []
    loader = BottomUpLoader(source, codec, SIZE, seed=0)
    assert len(loader) > 0
    ok, img, ts = loader.load(0, 0)
    assert ok and img.shape == (SIZE, SIZE, 3)
    assert ts[0][..., codec.spec.keypoint_max_channel].max() > 0.9   # someone was drawn


def test_batches_feed_the_focal_loss(tf, source, codec):
    from keras_pose.data.pipeline import bottom_up_dataset
    from keras_pose.losses import FocalL2Loss
    ds = bottom_up_dataset(source, codec, SIZE, 2, deterministic=True, seed=2)
    _, targets = next(iter(ds))
    loss = FocalL2Loss(channel_weights=codec.spec.channel_weights())
    c = codec.spec.num_channels
    for t in targets:
        assert float(loss(t, t[..., :c])) == 0.0          # perfect prediction
        assert float(loss(t, tf.zeros_like(t[..., :c]))) > 0.0
