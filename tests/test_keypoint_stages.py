"""Every stage reads the KeypointSpec: synthetic labels, data reader, task, losses, drawing."""
from __future__ import annotations

import json

import numpy as np
import pytest

from keras_pose.skeleton import COCO, load_spec


@pytest.fixture(scope="module")
def coco_synth(tmp_path_factory):
    from keras_pose.data import synthetic
    return synthetic.generate_dataset(tmp_path_factory.mktemp("s"), 4, 1, image_size=(64, 64),
                                      config="quickstart", progress=False)


def test_synthetic_figures_relabelled_with_mpii(tmp_path, coco_synth):
    from keras_pose.data import synthetic
    mpii = load_spec("mpii")
    p = synthetic.generate_dataset(tmp_path, 4, 1, image_size=(64, 64), config="quickstart",
                                   progress=False, spec=mpii)
    doc = json.loads(open(p["train_annotations"]).read())
    ref = json.loads(open(coco_synth["train_annotations"]).read())
    assert doc["categories"][0]["keypoints"] == list(mpii.names)
    assert len(doc["annotations"]) == len(ref["annotations"])   # the same scenes
    for a, b in zip(doc["annotations"], ref["annotations"]):
        kp = np.asarray(a["keypoints"]).reshape(16, 3)
        co = np.asarray(b["keypoints"]).reshape(17, 3)
        assert kp[mpii.names.index("left_wrist")].tolist() == co[9].tolist()
        hips = co[[11, 12]]
        pelvis = kp[mpii.names.index("pelvis")]
        if (hips[:, 2] > 0).all():
            assert np.allclose(pelvis[:2], hips[:, :2].mean(0), atol=0.01)
            assert pelvis[2] == hips[:, 2].min()
        else:
            assert pelvis.tolist() == [0, 0, 0]
        assert a["num_keypoints"] == int((kp[:, 2] > 0).sum()) or b["num_keypoints"] == 0


def test_synthetic_set_refuses_animals_in_one_line(tmp_path):
    from keras_pose.data import synthetic
    with pytest.raises(ValueError) as e:
        synthetic.generate_dataset(tmp_path, 1, 1, spec=load_spec("ap10k"), progress=False)
    msg = str(e.value)
    assert "'ap10k'" in msg and "left_front_paw" in msg and "--dataset coco" in msg
    assert "\n" not in msg


def test_task_sizes_codec_losses_and_checks_the_data(coco_synth):
    from keras_pose.models import presets
    from keras_pose.train.tasks import get_task

    crowd = load_spec("crowdpose")
    cfg = presets.for_spec(presets.get_preset("imhn_test"), crowd)
    assert cfg.out_channels == crowd.num_channels == 36
    task = get_task("bottom_up", cfg, {"sigma": 4.0}, spec=crowd)
    assert task.codec.spec == crowd and task.codec.config.sigma == 4.0
    loss = task.losses("l2", type("M", (), {"outputs": [0] * 3})())[0][0]
    assert np.array_equal(loss.channel_weights, crowd.channel_weights())
    with pytest.raises(ValueError, match="has 50 output channels but keypoint spec 'crowdpose'"):
        get_task("bottom_up", presets.get_preset("imhn_test"), None, spec=crowd)
    with pytest.raises(ValueError, match="category 'person' has 17 keypoints but the keypoint "
                                         "spec 'crowdpose' has 14"):
        task.source(coco_synth["train_annotations"], coco_synth["train_images"])
    mpii = load_spec("mpii")
    td = get_task("top_down", presets.for_spec(presets.get_preset("simple_baseline_tiny"), mpii),
                  None, spec=mpii)
    assert td.codec.spec == mpii and td.codec.num_keypoints == 16
    assert get_task("bottom_up", presets.get_preset("imhn_test")).codec.spec == COCO


def test_drawing_uses_the_specs_skeleton():
    from keras_pose.data.skeleton_poses import random_scene
    from keras_pose.structures import Poses
    from keras_pose.visualize import draw_poses

    spec = load_spec("ap10k")
    kp = random_scene(spec, np.random.default_rng(0), (128, 128), (1, 1))
    img = np.zeros((128, 128, 3), np.uint8)
    out = draw_poses(img, Poses(kp, np.ones(1)), spec)
    assert (out.sum(-1) > 0).sum() > 100
    with pytest.raises(ValueError, match="17 keypoints, spec has 14"):
        draw_poses(img, Poses(kp, np.ones(1)), load_spec("crowdpose"))


def test_flip_augmentation_swaps_the_specs_pairs():
    from keras_pose.data.transforms import apply_affine_to_sample

    spec = load_spec("mpii")
    kp = np.zeros((1, 16, 3), np.float32)
    kp[0, :, 2] = 2
    kp[0, :, 0] = np.arange(16) + 10
    kp[0, :, 1] = 5
    M = np.array([[-1.0, 0, 63], [0, 1, 0]])
    s = apply_affine_to_sample(np.zeros((64, 64, 3), np.uint8), kp, None, None, M, True, spec)
    lw, rw = spec.names.index("left_wrist"), spec.names.index("right_wrist")
    assert s.keypoints[0, lw, 0] == 63 - kp[0, rw, 0]   # the mirrored right wrist is now left
    pel = spec.names.index("pelvis")
    assert s.keypoints[0, pel, 0] == 63 - kp[0, pel, 0]


def test_top_down_batches_follow_the_spec(tmp_path):
    """MPII labels on the synthetic figures -> crops -> (h, w, 2K) targets, flipped with its pairs."""
    from keras_pose.data import synthetic
    from keras_pose.models import presets
    from keras_pose.train.config import TrainConfig
    from keras_pose.train.tasks import get_task

    mpii = load_spec("mpii")
    p = synthetic.generate_dataset(tmp_path, 6, 1, image_size=(96, 96), config="quickstart",
                                   progress=False, spec=mpii)
    cfg = presets.for_spec(presets.get_preset("simple_baseline_tiny"), mpii)
    task = get_task("top_down", cfg, spec=mpii)
    src = task.source(p["train_annotations"], p["train_images"], main_min_area=16)
    x, y = next(iter(task.dataset(src, TrainConfig(batch_size=2, deterministic=True))))
    h, w = cfg.output_size
    assert tuple(x.shape) == (2, *cfg.input_size, 3) and tuple(y.shape) == (2, h, w, 2 * 16)
    assert float(np.asarray(y)[..., 16:].max()) == 1.0     # some joint weighs in
