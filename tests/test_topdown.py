"""Top-down evaluation from boxes, predictor, OKS-NMS and the tf.data pipeline.

The round trips use an *oracle* model: for each crop it encodes the matching
ground-truth person's keypoints (through the crop's own affine) with the codec,
so everything except learning is exercised - crops, encode, flip fusion,
DARK decode, inverse affine, rescoring, OKS-NMS, results and COCOeval.
"""
import json

import numpy as np
import pytest

from keras_pose.codecs import HeatmapCodec
from keras_pose.data.crops import transform_keypoints
from keras_pose.evaluation.coco_eval import load_coco_gt
from keras_pose.codecs.postprocess import oks_nms, rescore
from keras_pose.evaluation.topdown import evaluate_topdown, load_boxes
from keras_pose.inference.topdown_predictor import TopDownPredictor
from keras_pose.skeleton import COCO


def _iou(a, b):
    ax2, ay2, bx2, by2 = a[0] + a[2], a[1] + a[3], b[0] + b[2], b[1] + b[3]
    iw = max(0.0, min(ax2, bx2) - max(a[0], b[0]))
    ih = max(0.0, min(ay2, by2) - max(a[1], b[1]))
    inter = iw * ih
    return inter / (a[2] * a[3] + b[2] * b[3] - inter + 1e-9)


class GtOracle:
    """fn(images, records): heatmaps of the GT person that best overlaps each crop's box."""

    def __init__(self, gt, codec):
        self.codec = codec
        self.anns = {}
        for a in gt.dataset["annotations"]:
            if a["num_keypoints"] > 0 and not a["iscrowd"]:
                self.anns.setdefault(a["image_id"], []).append(a)
        self.calls = 0

    def __call__(self, images, records):
        self.calls += 1
        maps = []
        for rec in records:
            anns = self.anns.get(rec.image_id, [])
            best = max(anns, key=lambda a: _iou(a["bbox"], rec.box), default=None)
            K = self.codec.num_keypoints
            if best is None or _iou(best["bbox"], rec.box) < 0.3:
                maps.append(np.zeros(self.codec.heatmap_size + (K,), np.float32))
                continue
            kp = np.asarray(best["keypoints"], np.float64).reshape(K, 3)
            kp = transform_keypoints(kp, rec.matrix, COCO.flip_perm if rec.flipped else None)
            maps.append(self.codec.encode(kp)["heatmaps"])
        return np.stack(maps)


@pytest.fixture(scope="module")
def sample(coco_sample_dir):
    ann = coco_sample_dir / "test_coco.json"
    return ann, coco_sample_dir, load_coco_gt(str(ann))


@pytest.mark.parametrize("heatmap_size", [(64, 48), (32, 24)])
def test_gt_box_round_trip_reaches_full_ap(sample, heatmap_size):
    ann, img_dir, gt = sample
    codec = HeatmapCodec(heatmap_size=heatmap_size)
    oracle = GtOracle(gt, codec)
    results, stats = evaluate_topdown(oracle, codec, ann, img_dir, boxes="gt", batch_size=4,
                                      flip=True, progress=False)
    print(f"GT-box round trip {heatmap_size}: AP = {stats['AP']:.4f}")
    assert stats["boxes"] == 12 and stats["num_results"] == 12 and len(results) == 12
    assert oracle.calls == 2 * 3            # 12 crops in batches of 4, each also mirrored
    assert stats["AP"] >= 0.98, stats


def test_detector_boxes_give_a_sane_ap(sample, tmp_path):
    ann, img_dir, gt = sample
    codec = HeatmapCodec()
    out = tmp_path / "res.json"
    results, stats = evaluate_topdown(GtOracle(gt, codec), codec, ann, img_dir,
                                      boxes=img_dir / "test_coco_det_AP_H_56.json",
                                      flip=True, results_path=out, progress=False)
    print(f"detector-box oracle AP = {stats['AP']:.4f} ({stats['boxes']} boxes, "
          f"{stats['num_results']} poses after OKS-NMS)")
    assert stats["boxes"] > 12 and 0 < stats["num_results"] <= stats["boxes"]
    assert 0.5 < stats["AP"] <= 1.0
    assert json.loads(out.read_text()) and all(0 <= r["score"] <= 1 for r in results)


def test_bad_detections_are_skipped_and_counted(sample, tmp_path):
    ann, img_dir, gt = sample
    codec = HeatmapCodec(heatmap_size=(16, 12))
    good = {"image_id": 785, "category_id": 1, "bbox": [280.8, 44.7, 218.7, 346.7], "score": 0.9}
    dets = [good,
            dict(good, bbox=[10, 10, 0, 40]),          # zero width
            dict(good, bbox=[10, 10, -5, 40]),         # negative width
            dict(good, bbox=[900, 10, 50, 40]),        # right of the 640-px image
            dict(good, bbox=[-90, -90, 50, 40]),       # above-left, no overlap
            dict(good, score=float("nan")),
            dict(good, score=0.01),
            dict(good, image_id=123456789),
            dict(good, category_id=2)]
    path = tmp_path / "dets.json"
    path.write_text(json.dumps(dets))                  # json writes NaN as a bare NaN token
    _, stats = evaluate_topdown(GtOracle(gt, codec), codec, ann, img_dir, boxes=path,
                                score_threshold=0.05, progress=False)
    assert stats["boxes"] == 1 and stats["bad_box"] == 4 and stats["nan_score"] == 1
    assert stats["below_threshold"] == 1 and stats["unknown_image"] == 1 and stats["not_person"] == 1
    assert stats["num_results"] == 1


def test_empty_or_broken_detections_file(sample, tmp_path, caplog):
    ann, img_dir, gt = sample
    codec = HeatmapCodec(heatmap_size=(16, 12))
    empty = tmp_path / "empty.json"
    empty.write_text("[]")
    results, stats = evaluate_topdown(GtOracle(gt, codec), codec, ann, img_dir, boxes=empty,
                                      progress=False)
    assert results == [] and stats["AP"] == 0 and "AP is 0" in stats["message"]
    assert "empty" in caplog.text
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(ValueError, match="broken.json"):
        load_boxes(broken, gt, gt.getImgIds())
    with pytest.raises(ValueError, match="JSON list"):
        empty.write_text('{"a": 1}')
        load_boxes(empty, gt, gt.getImgIds())


def test_oks_nms_and_rescoring():
    rng = np.random.default_rng(0)
    a = np.zeros((17, 3))
    a[:, :2] = rng.uniform(100, 200, (17, 2))
    a[:, 2] = 0.9
    near = a.copy()
    near[:, :2] += 0.5                                   # duplicate detection of the same person
    far = a.copy()
    far[:, :2] += 150                                    # another person
    kps = np.stack([near, a, far])
    keep = oks_nms(kps, [0.8, 0.9, 0.5], [1e4] * 3, COCO.sigmas, 0.9)
    assert keep.tolist() == [1, 2]
    assert oks_nms(np.zeros((0, 17, 3)), [], [], COCO.sigmas).size == 0
    conf = np.zeros((2, 17, 3))
    conf[0, :4, 2] = [0.1, 0.5, 0.7, 0.9]                # only 3 above 0.2 count
    np.testing.assert_allclose(rescore(conf, [0.5, 1.0]), [0.5 * 0.7, 0.0], atol=1e-6)


def test_predictor_maps_back_to_image_pixels(sample):
    """One image, GT boxes plus bad ones: poses land on the GT keypoints in image pixels."""
    from keras_pose.io import load_image

    ann, img_dir, gt = sample
    codec = HeatmapCodec()
    img_id = 40083
    anns = [a for a in gt.imgToAnns[img_id] if a["num_keypoints"] > 0]
    boxes = [a["bbox"] for a in anns] + [[0, 0, 0, 10], [5000, 5, 10, 10]]
    pred = TopDownPredictor(GtOracle(gt, codec), codec, flip=True, batch_size=2)
    image = load_image(img_dir / gt.imgs[img_id]["file_name"])
    poses = pred.predict(image, boxes, [0.9] * len(anns) + [1.0, 1.0], image_id=img_id)
    assert len(poses) == len(anns)
    for a in anns:
        kp = np.asarray(a["keypoints"], np.float64).reshape(17, 3)
        lab = kp[:, 2] > 0
        err = [np.abs(p[lab, :2] - kp[lab, :2]).max() for p in poses.keypoints]
        assert min(err) < 0.5                            # sub-pixel in the original image
    assert np.all(poses.scores > 0.8)
    assert len(pred.predict(image, [[0, 0, -1, 5]])) == 0


# ------------------------------------------------------------------ the input pipeline
@pytest.fixture(scope="module")
def coco_source(coco_sample_dir):
    from keras_pose.data.coco import CocoKeypoints
    return CocoKeypoints(coco_sample_dir / "test_coco.json", coco_sample_dir)


@pytest.mark.parametrize("augment", [False, True])
def test_loader_targets_decode_back_onto_the_annotations(coco_source, augment):
    from keras_pose.data.topdown_pipeline import TopDownLoader
    from keras_pose.structures import apply_affine, invert_affine

    codec = HeatmapCodec(input_size=(128, 96), heatmap_size=(32, 24))
    loader = TopDownLoader(coco_source, codec, augment=augment, seed=3)
    assert len(loader) == 12 and loader.counts["no_keypoints"] == 2
    flips = 0
    for i in range(len(loader)):
        ok, crop, targets, m = loader.load(epoch=1, index=i)
        assert ok and crop.shape == (128, 96, 3) and crop.dtype == np.float32
        assert targets.shape == (32, 24, 34) and 0.0 <= crop.min() and crop.max() <= 255.0
        gt = loader.samples[i].keypoints
        flipped = np.linalg.det(m[:, :2]) < 0
        flips += flipped
        perm = COCO.flip_perm if flipped else np.arange(17)
        dec = codec.decode(targets[..., :17])
        back = apply_affine(dec[:, :2], invert_affine(m))
        weights = targets[0, 0, 17:]
        in_crop = apply_affine(gt[perm, :2], m)
        inside = np.all((in_crop >= 0) & (in_crop <= [95, 127]), axis=1)
        for j in np.flatnonzero(weights > 0):
            assert gt[perm[j], 2] > 0
            if not inside[j]:       # weighted Gaussian tail on the map, centre beyond it
                continue
            np.testing.assert_allclose(back[j], gt[perm[j], :2], atol=0.5)
        # A labelled joint loses its weight only when augmentation pushed it far off the crop.
        assert augment or (weights > 0).sum() == (gt[:, 2] > 0).sum()
    assert (flips > 0) == augment


def test_topdown_dataset_batches_and_determinism(coco_source):
    pytest.importorskip("tensorflow")
    from keras_pose.data.topdown_pipeline import topdown_dataset

    codec = HeatmapCodec(input_size=(64, 48), heatmap_size=(16, 12))
    ev = topdown_dataset(coco_source, codec, batch_size=5, training=False)
    shapes = [(x.shape, y.shape) for x, y in ev]
    assert [s[0][0] for s in shapes] == [5, 5, 2]              # one ordered pass, remainder kept
    assert shapes[0] == ((5, 64, 48, 3), (5, 16, 12, 34))

    def first(seed):
        ds = topdown_dataset(coco_source, codec, batch_size=4, training=True, seed=seed,
                             deterministic=True)
        return [np.asarray(t) for t in next(iter(ds))]

    a, b, c = first(7), first(7), first(8)
    # Resuming after one batch of 4 draws gives exactly the uninterrupted second batch.
    full = topdown_dataset(coco_source, codec, batch_size=4, training=True, seed=7, deterministic=True)
    it = iter(full)
    next(it)
    second = np.asarray(next(it)[1])
    resumed = topdown_dataset(coco_source, codec, batch_size=4, training=True, seed=7,
                              deterministic=True, start_index=4)
    np.testing.assert_array_equal(np.asarray(next(iter(resumed))[1]), second)
    assert a[0].dtype == np.float32 and a[1].shape == (4, 16, 12, 34)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])
    with pytest.raises(ValueError, match="batch_size"):
        topdown_dataset(coco_source, codec, batch_size=0)


def test_keras_model_path_through_predictor_and_evaluation(sample):
    """A tiny real Keras model (sigmoid output) runs through predict_on_batch, flip and COCOeval."""
    keras = pytest.importorskip("keras")
    ann, img_dir, gt = sample
    keras.utils.set_random_seed(0)
    codec = HeatmapCodec(input_size=(64, 48), heatmap_size=(16, 12))
    x = keras.Input((64, 48, 3))
    y = keras.layers.Rescaling(1 / 255.0)(x)
    y = keras.layers.Conv2D(8, 3, strides=4, padding="same", activation="relu")(y)
    y = keras.layers.Conv2D(17, 1, activation="sigmoid")(y)
    model = keras.Model(x, y)
    results, stats = evaluate_topdown(model, codec, ann, img_dir, boxes="gt", batch_size=8,
                                      flip=True, max_images=2, progress=False)
    assert stats["num_images"] == 2 and stats["boxes"] == 3 and len(results) == 3
    assert 0.0 <= stats["AP"] <= 1.0
    for r in results:
        kp = np.asarray(r["keypoints"]).reshape(17, 3)
        img = gt.imgs[r["image_id"]]
        assert np.all(kp[:, 0] > -img["width"]) and np.all(kp[:, 0] < 2 * img["width"])
        assert 0.0 <= r["score"] <= 1.0
    with pytest.raises(ValueError, match="expected"):
        TopDownPredictor(lambda imgs: np.zeros((1, 16, 12)), codec).predict(
            np.zeros((100, 100, 3), np.uint8), [[10, 10, 50, 50]])


@pytest.mark.slow
def test_fasterpose_tiny_trains_on_the_pipeline_and_evaluates(coco_source, sample):
    """Preset -> RCE fit on topdown_dataset (2 steps) -> sigmoid model -> detector-box AP."""
    keras = pytest.importorskip("keras")
    from keras_pose.data.topdown_pipeline import topdown_dataset
    from keras_pose.losses import RCELoss
    from keras_pose.models.fasterpose import fasterpose_inference_model
    from keras_pose.models.presets import from_preset

    ann, img_dir, _ = sample
    keras.utils.set_random_seed(0)
    model = from_preset("fasterpose_tiny")
    hm = tuple(int(d) for d in model.outputs[0].shape[1:3])
    codec = HeatmapCodec(input_size=tuple(int(d) for d in model.inputs[0].shape[1:3]), heatmap_size=hm)
    ds = topdown_dataset(coco_source, codec, batch_size=4, training=True, seed=0)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=RCELoss(), jit_compile=False)
    hist = model.fit(ds, steps_per_epoch=2, epochs=1, verbose=0)
    assert np.isfinite(hist.history["loss"]).all()
    _, stats = evaluate_topdown(fasterpose_inference_model(model), codec, ann, img_dir,
                                boxes=img_dir / "test_coco_det_AP_H_56.json", max_images=1,
                                progress=False)
    assert stats["boxes"] > 0 and stats["num_results"] > 0 and 0.0 <= stats["AP"] <= 1.0


def test_missing_image_is_skipped_and_counted(sample, tmp_path):
    import shutil

    ann, img_dir, gt = sample
    for f in img_dir.glob("*.jpg"):
        if f.name != "000000000785.jpg":
            shutil.copy(f, tmp_path / f.name)
    codec = HeatmapCodec(heatmap_size=(16, 12))
    results, stats = evaluate_topdown(GtOracle(gt, codec), codec, ann, tmp_path, progress=False)
    assert stats["bad_image"] == 1 and stats["num_results"] == 11 and stats["AP"] > 0.8
