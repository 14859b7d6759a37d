"""Teacher-student training: targets, cache, teacher inside the step, a short run.

A tiny random teacher (imhn_test, 64x64) is enough for the mechanics: its maps
are a fixed function of the image, so a student that learns must move toward
them. The AP proof with the trained quickstart teacher is benchmarks/distill.py.
"""
import json
import os

import numpy as np
import pytest

from keras_pose.train.config import TrainConfig
from keras_pose.train.distill import combine_targets, fit_affine, person_regions

SIZE = (64, 64)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    import keras

    from keras_pose.codecs import BodyPartsCodec
    from keras_pose.data import synthetic
    from keras_pose.models import presets

    root = tmp_path_factory.mktemp("distill")
    synthetic.generate_dataset(str(root / "data"), num_train=8, num_val=2, seed=0,
                               image_size=SIZE, config="quickstart")
    keras.utils.set_random_seed(1)
    teacher = root / "teacher"
    teacher.mkdir()
    model = presets.from_preset("imhn_test")
    rng = np.random.default_rng(0)
    for layer in model.layers:   # heads start near 0 (std 1e-3): give the teacher real maps
        if layer.name.startswith("s0_x"):
            kernel, bias = layer.get_weights()
            layer.set_weights([kernel * 300.0, rng.uniform(0.0, 0.2, bias.shape).astype("float32")])
    model.save(str(teacher / "model.keras"))
    codec = BodyPartsCodec(num_scales=presets.get_preset("imhn_test").num_scales)
    TrainConfig(preset="imhn_test", model_dir=str(teacher), codec=codec.get_config(),
                eval_scales=(1.0, 1.5), eval_flip=True).save(str(teacher / "config.json"))
    return root


def test_fit_affine_and_combine():
    from keras_pose.data.transforms import AugmentParams

    # At scale 1 an unlabeled 100x50 image fills the 64x64 input's height, centred.
    M = fit_affine((100, 50), AugmentParams(), (64, 64))
    corners = np.array([[-0.5, -0.5, 1], [49.5, 99.5, 1]]) @ M.T
    np.testing.assert_allclose(corners, [[15.5, -0.5], [47.5, 63.5]], atol=1e-6)
    gt, t = np.full((2, 2, 3), 0.9), np.full((2, 2, 3), 0.2)
    m = np.array([[[1.0], [0.0]], [[0.0], [0.0]]])
    v = np.array([[[1.0], [1.0]], [[0.5], [0.0]]])
    target, mask = combine_targets(gt, m, v, t, teacher_weight=2.0)
    np.testing.assert_allclose(target[..., 0], [[0.9, 0.2], [0.2, 0.2]])
    np.testing.assert_allclose(mask[..., 0], [[1.0, 2.0], [1.0, 0.0]])


def test_config_errors():
    with pytest.raises(ValueError, match="dataset=images .* needs --teacher"):
        TrainConfig(dataset="images", images_dir="x").validate()
    with pytest.raises(ValueError, match="need --teacher"):
        TrainConfig(teacher_cache="c").validate()
    with pytest.raises(ValueError, match="unlabeled_framing=teacher needs --teacher_cache"):
        TrainConfig(dataset="images", images_dir="x", teacher="t",
                    unlabeled_framing="teacher").validate()


def test_teacher_framing_finds_persons_and_centres_one():
    """person_regions: each connected region of the teacher's part maps is one
    person (cells -> input pixels -> original pixels); the loader's "teacher"
    framing brings a drawn one to the input centre at target_dist * H."""
    from types import SimpleNamespace

    from keras_pose.codecs import BodyPartsCodec
    from keras_pose.data.transforms import AugmentConfig, AugmentParams
    from keras_pose.train.distill import DistillLoader

    codec = BodyPartsCodec(num_scales=1)
    parts = codec.spec.num_limbs + codec.spec.num_internal
    maps = np.zeros((16, 16, codec.spec.num_channels), np.float32)
    maps[2:12, 1:4, 0] = 0.9           # person A: rows 2..11, cols 1..3 (limb channel)
    maps[5:15, 9:13, parts - 1] = 0.8  # person B: rows 5..14 (a map point channel)
    maps[0, 15, 3] = 1.0               # a one-cell speck: not a person
    maps[:, :, parts] = 1.0            # channels past the parts are ignored
    m_maps = np.array([[2.0, 0.0, 0.0], [0.0, 2.0, 0.0]])   # original -> input: x2
    regions = sorted(person_regions(maps, m_maps, parts, stride=4))
    assert len(regions) == 2
    # A: input pixels x in [3.5, 15.5], y in [7.5, 47.5] -> original /2
    np.testing.assert_allclose(regions[0], [4.75, 13.75, 20.0])
    np.testing.assert_allclose(regions[1][2], 20.0)

    teacher = SimpleNamespace(codec=codec)
    cache = SimpleNamespace(teacher=teacher, get=lambda path: (maps, m_maps))
    with pytest.raises(ValueError, match="framing must be"):
        DistillLoader(codec, SIZE, ["a.png"], cache=cache, framing="box")
    with pytest.raises(ValueError, match="needs the teacher's cache"):
        DistillLoader(codec, SIZE, ["a.png"], framing="teacher")
    loader = DistillLoader(codec, SIZE, ["a.png"], cache=cache, framing="teacher",
                           augment_config=AugmentConfig(target_dist=0.5))
    M = loader._frame("a.png", (40, 40), AugmentParams(), np.random.default_rng(0))
    cx, cy, h = next(r for r in regions if np.allclose(M @ [r[0], r[1], 1], [31.5, 31.5]))
    top, bottom = M @ [cx, cy - h / 2, 1], M @ [cx, cy + h / 2, 1]
    np.testing.assert_allclose(bottom[1] - top[1], 0.5 * 63, rtol=1e-6)   # as training_affine's (H - 1)


def test_cache_and_in_step_targets_agree(setup):
    """Cache path (maps of the original, warped and mirrored by the draw) and the
    in-step path (the teacher on the augmented batch, in TensorFlow) give the same
    targets for a flip-only draw: flip fusion makes the teacher mirror-equivariant,
    so this checks the channel swap, the resampling and the TF flip fusion."""
    from keras_pose.data.transforms import AugmentConfig
    from keras_pose.train.distill import DistillLoader, Teacher, TeacherCache, list_images
    from keras_pose.train.distill_step import InStepTeacher

    assert Teacher(str(setup / "teacher")).scales == (1.0,)     # default: one scale
    teacher = Teacher(str(setup / "teacher"), scales=(1.0, 1.5))
    assert teacher.scales == (1.0, 1.5) and teacher.flip
    images = list_images(setup / "data" / "train")[:4]
    cache = TeacherCache(setup / "cache_a", teacher, images)
    info = cache.build(verbose=False)
    assert info["computed"] == 4 and info["bytes"] > 0
    assert TeacherCache(setup / "cache_a", teacher, images).build(verbose=False)["computed"] == 0
    with pytest.raises(ValueError, match="written for another teacher"):
        TeacherCache(setup / "cache_a", teacher, images[:2]).build(verbose=False)

    aug = AugmentConfig(flip_prob=1.0, tint_prob=0.0, max_rotation=0.0, scale_prob=0.0,
                        max_shift=0.0)
    codec = teacher.codec
    cached = DistillLoader(codec, SIZE, images, cache=cache, augment_config=aug)
    raw = DistillLoader(codec, SIZE, images, augment_config=aug)
    ep, idx = np.zeros(4, np.int64), np.arange(4)
    x, y_cache = cached.load_batch(ep, idx)
    x2, packs = raw.load_batch(ep, idx)
    np.testing.assert_array_equal(x, x2)
    c = codec.spec.num_channels
    assert y_cache[0].shape == (4, 16, 16, c + 1) and packs[0].shape == (4, 16, 16, c + 2)
    y_step = [np.asarray(t) for t in InStepTeacher(teacher, SIZE, codec).targets(x2, packs)]
    for a, b in zip(y_cache, y_step):
        assert np.abs(a[..., :c]).mean() > 1e-3   # the teacher's maps are not empty
        np.testing.assert_allclose(a[..., c:], b[..., c:], atol=1e-6)
        assert np.abs(a[..., :c] - b[..., :c]).mean() < 0.05 * np.abs(b[..., :c]).mean()


@pytest.mark.parametrize("cache", [True, False], ids=["cache", "in_step"])
def test_student_moves_toward_teacher(setup, cache):
    """A few steps: the loss falls and the student's maps get closer to the teacher's."""
    from keras_pose.train import loop
    from keras_pose.train.distill import Teacher, list_images
    from keras_pose.train.distill_step import InStepTeacher

    model_dir = setup / f"student_{'cache' if cache else 'step'}"
    cfg = TrainConfig(preset="imhn_test", dataset="images",
                      images_dir=str(setup / "data" / "train"), teacher=str(setup / "teacher"),
                      teacher_cache=str(setup / "cache_run") if cache else None,
                      model_dir=str(model_dir), epochs=2, steps_per_epoch=4, batch_size=4,
                      lr=3e-3, warmup_epochs=0.0, export_int8=False, demo_image=False, seed=2)
    teacher = Teacher(str(setup / "teacher"))
    step = InStepTeacher(teacher, SIZE, teacher.codec)
    images = list_images(setup / "data" / "train")
    from keras_pose.io import load_image
    x = np.stack([load_image(p) for p in images]).astype(np.float32)
    target = np.asarray(step.maps(x))

    import keras

    from keras_pose.models import presets
    keras.utils.set_random_seed(2)
    before = presets.from_preset("imhn_test")
    out = loop.run(cfg, verbose=0)
    model = out["model"]
    hist = out["summary"]
    assert hist["distillation"]["mode"] == ("cache" if cache else "in_step")
    losses = [float(v) for v in open(model_dir / "history.csv").read().split("\n")[1:] if v
              for v in [v.split(",")[1]]]
    assert losses[-1] < losses[0], losses

    def dist(m):
        return float(np.mean((np.asarray(m.predict(x, verbose=0)[0]) - target) ** 2))
    assert dist(model) < 0.8 * dist(before), (dist(model), dist(before))
    saved = json.loads((model_dir / "config.json").read_text())
    assert saved["teacher"] == str(setup / "teacher")
    # The student decodes with the teacher's codec.
    assert saved["codec"]["config"] == teacher.codec.get_config()["config"]
    assert os.path.isfile(model_dir / "model.keras")


def test_labeled_samples_keep_ground_truth(setup):
    """Mixed with a labeled set: ground truth where its loss mask is on, the teacher
    only where the labels leave pixels unsupervised; unlabeled samples follow."""
    from keras_pose.data.coco import CocoKeypoints
    from keras_pose.data.pipeline import BottomUpLoader
    from keras_pose.train.distill import DistillLoader, Teacher, TeacherCache, list_images

    teacher = Teacher(str(setup / "teacher"))
    codec = teacher.codec
    data = setup / "data"
    source = CocoKeypoints(str(data / "annotations" / "person_keypoints_train.json"),
                           str(data / "train"), main_min_area=16)
    labeled = BottomUpLoader(source, codec, SIZE, seed=5)
    extra = list_images(data / "val")
    probe = DistillLoader(codec, SIZE, extra, labeled)
    assert len(probe) == len(labeled) + len(extra)
    cache = TeacherCache(setup / "cache_mixed", teacher, probe.paths())
    cache.build(verbose=False)
    loader = DistillLoader(codec, SIZE, extra, labeled, cache=cache, seed=5)
    c = codec.spec.num_channels
    image, packs = loader.sample(0, 0)
    ref_image, ref_levels = labeled._sample(0, 0)
    np.testing.assert_array_equal(image, ref_image)   # the labeled loader's own draw
    for pack, lv in zip(packs, ref_levels):
        on = lv["mask"][..., 0] >= 1.0
        np.testing.assert_allclose(pack[..., :c][on], lv["heatmaps"][on], atol=1e-6)
        assert (pack[..., c] >= lv["mask"][..., 0] - 1e-6).all()
    # An unlabeled sample: all supervision from the teacher, nothing outside the image.
    image, packs = loader.sample(0, len(labeled))
    assert 0.0 <= packs[0][..., c].min() and packs[0][..., c].max() <= 1.0
    assert np.abs(packs[0][..., :c]).mean() > 1e-3
