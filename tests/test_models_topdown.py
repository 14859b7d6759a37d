"""Top-down models: FasterPose, SimpleBaseline, shared backbones, FLOP counting.

Tiny models (MobileNetV2 alpha 0.35 at 128x96); ResNet-50 builds in seconds.
"""
import functools
import subprocess
import sys

import keras  # Keras 3 first (docs/tf_stack_notes.md §2)
import numpy as np
import pytest
from helpers import assert_keras_roundtrip

from keras_pose.models import blocks, presets
from keras_pose.models.configs import FasterPoseConfig, SimpleBaselineConfig
from keras_pose.models.fasterpose import build_fasterpose, fasterpose_inference_model
from keras_pose.models.flops import count_model


@functools.lru_cache(maxsize=None)
def _preset_model(name):
    """Each preset is built once per session (tests must not change its weights)."""
    return presets.from_preset(name)


def _rgb(shape, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, shape).astype("float32")


def _trainable(model):
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


# --------------------------------------------------------------- top-down
@pytest.fixture(scope="module")
def fp_tiny():
    return _preset_model("fasterpose_tiny")


def test_fasterpose_tiny_head_prior_and_inference(fp_tiny):
    cfg = presets.get_preset("fasterpose_tiny")
    assert fp_tiny.output_shape == (None, 32, 24, 17) and cfg.output_size == (32, 24)
    assert fp_tiny.get_layer("heatmaps").dtype_policy.compute_dtype == "float32"
    assert not any(isinstance(l, keras.Model) for l in fp_tiny.layers)  # one flat graph
    x = _rgb((2, 128, 96, 3), seed=4)
    logits = np.asarray(fp_tiny(x))
    # Tiny kernel init + bias -log((1-pi)/pi): every pixel starts at sigmoid ~ pi = 0.01.
    np.testing.assert_allclose(logits.mean(), -np.log(99.0), atol=0.05)
    inf = fasterpose_inference_model(fp_tiny)
    assert inf.output_names == ["heatmaps_prob"]
    np.testing.assert_allclose(np.asarray(inf(x)), 1 / (1 + np.exp(-logits)), atol=1e-6)
    one = fasterpose_inference_model(fp_tiny, batch_size=1)
    assert one.input_shape == (1, 128, 96, 3)


def test_fasterpose_depth_to_space_head_matches_manual(fp_tiny):
    """heatmaps = depth_to_space(head_conv(features), 8)."""
    conv = fp_tiny.get_layer("head_conv")
    saved = conv.get_weights()
    conv.set_weights([np.random.default_rng(5).normal(0, 0.05, conv.kernel.shape), saved[1]])
    x = _rgb((1, 128, 96, 3), seed=6)
    try:
        pre = np.asarray(keras.Model(fp_tiny.inputs[0], conv.output)(x))
        out = np.asarray(fp_tiny(x))
    finally:
        conv.set_weights(saved)
    assert pre.shape == (1, 4, 3, 17 * 64)
    np.testing.assert_allclose(out[0, 8 * 2 + 3, 8 * 1 + 5], pre[0, 2, 1, (3 * 8 + 5) * 17:(3 * 8 + 6) * 17],
                               atol=1e-5)


@pytest.mark.parametrize("upscale,size", [(1, (4, 3)), (4, (16, 12))])
def test_fasterpose_upscale(upscale, size):
    model = build_fasterpose(presets.get_preset("fasterpose_tiny", upscale=upscale))
    assert model.output_shape == (None, *size, 17)
    assert (upscale == 1) == (not any(isinstance(l, blocks.DepthToSpace) for l in model.layers))


def test_fasterpose_roundtrip(tmp_path, fp_tiny):
    assert_keras_roundtrip(fp_tiny, _rgb((1, 128, 96, 3)), tmp_path, atol=1e-5)


def test_saved_fasterpose_loads_in_fresh_process_after_importing_models(tmp_path, fp_tiny):
    """``import keras_pose.models`` alone must register DepthToSpace for load_model."""
    path = tmp_path / "fp.keras"
    fp_tiny.save(path)
    code = ("import keras, keras_pose.models; "
            f"m = keras.saving.load_model({str(path)!r}); print(m.output_shape)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "(None, 32, 24, 17)" in res.stdout


def test_simple_baseline_tiny():
    model = _preset_model("simple_baseline_tiny")
    assert model.output_shape == (None, 32, 24, 17)
    assert not any(isinstance(l, keras.Model) for l in model.layers)
    deconvs = [l for l in model.layers if isinstance(l, keras.layers.Conv2DTranspose)]
    assert len(deconvs) == 3 and all(l.kernel_size == (4, 4) and l.strides == (2, 2)
                                     and not l.use_bias and l.filters == 256 for l in deconvs)
    # The backbone normalises inside the graph: MobileNetV2's x/127.5 - 1.
    norm = model.get_layer("normalize")
    x = _rgb((1, 128, 96, 3))
    np.testing.assert_allclose(np.asarray(norm(x)), x / 127.5 - 1, atol=1e-5)


def test_resnet_normalisation_equals_caffe_bgr(tmp_path):
    """RGB input + Rescaling(offset=-mean_rgb) + flipped conv1 kernel == Keras' caffe
    preprocessing (RGB->BGR, minus BGR mean) on the original weights."""
    from keras_pose.models.backbones import backbone_features
    ref = keras.applications.ResNet50(include_top=False, weights=None, input_shape=(32, 32, 3))
    rng = np.random.default_rng(7)
    conv1 = ref.get_layer("conv1_conv")
    conv1.set_weights([rng.normal(0, 0.05, conv1.kernel.shape), conv1.bias.numpy()])
    path = tmp_path / "r50.weights.h5"
    ref.save_weights(path)
    image = keras.Input((32, 32, 3))
    ours = keras.Model(image, backbone_features(keras, image, "resnet50", weights=str(path)))
    x = _rgb((1, 32, 32, 3), seed=8)
    want = np.asarray(keras.Model(ref.inputs[0], conv1.output)(
        keras.applications.resnet50.preprocess_input(x.copy())))
    got = np.asarray(keras.Model(ours.inputs[0], ours.get_layer("conv1_conv").output)(x))
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-3)


def test_topdown_config_validation():
    with pytest.raises(ValueError, match="upscale"):
        FasterPoseConfig(upscale=3).validate()
    with pytest.raises(ValueError, match="backbone"):
        SimpleBaselineConfig(backbone="vgg").validate()
    with pytest.raises(ValueError, match="alpha applies to mobilenetv2"):
        FasterPoseConfig(alpha=0.5).validate()
    with pytest.raises(ValueError, match="multiples of 32"):
        FasterPoseConfig(input_size=(250, 192)).validate()

PINNED = {  # preset: (count_params, trainable)
    "fasterpose_tiny": (1_803_936, 1_789_856),
    "simple_baseline_tiny": (7_757_681, 7_742_065),
    "fasterpose_r50_256x192": (25_817_024, 25_763_904),
    "simple_baseline_r50_256x192": (34_080_913, 34_026_257),
}


@pytest.mark.parametrize("name", sorted(PINNED))
def test_topdown_preset_shapes_and_pinned_params(name):
    cfg = presets.get_preset(name)
    model = _preset_model(name)
    assert model.input_shape == (None, *cfg.input_size, 3)
    assert model.output_shape == (None, *cfg.output_size, cfg.num_keypoints)
    assert (model.count_params(), _trainable(model)) == PINNED[name]
    assert not any(isinstance(l, keras.Model) for l in model.layers)  # one flat graph


def test_flop_conventions_fasterpose_vs_simple_baseline():
    """docs/method_top_down.md §2.2: SB-R50 256x192 ~8.9 HRNet GFLOPs, FasterPose-R50 r=8 ~3.8,
    ratio ~0.42 (the abstract's -58%). Keras' ResNet50 strides in the first 1x1 of
    a block (torchvision: in the 3x3), so its backbone is ~0.2 GFLOPs cheaper."""
    sb = count_model(_preset_model("simple_baseline_r50_256x192"))
    fp = count_model(_preset_model("fasterpose_r50_256x192"))
    assert 8.6 < sb["hrnet_gflops"] < 9.1
    assert 3.5 < fp["hrnet_gflops"] < 3.9
    assert 0.39 < fp["hrnet_gflops"] / sb["hrnet_gflops"] < 0.44
    # The deconvolutions cost 4x less in true MACs than the convention says:
    # 3 deconvs of 2048/256/256 -> 256 channels at 8x6/16x12/32x24 inputs.
    deconv_true = 16 * 256 * (2048 * 48 + 256 * 192 + 256 * 768)
    head_sb = deconv_true + 256 * 17 * 64 * 48
    head_fp = 2048 * 17 * 64 * 48
    assert sb["macs"] - fp["macs"] == head_sb - head_fp
    assert sb["hrnet_gflops"] * 1024 ** 3 - sb["macs"] == pytest.approx(3 * deconv_true, abs=1024 ** 3 * 1e-4)
    assert sb["output_shapes"] == fp["output_shapes"] == [[64, 48, 17]]
    # Moving the stride of conv3/4/5_block1 from the 1x1 (Keras) to the 3x3
    # (torchvision) makes each block's first 1x1 conv run on a 4x larger grid; adding
    # that back gives the torchvision-convention figures of docs/method_top_down.md §2.2, 8.99 and 3.83 GFLOPs.
    torchvision_extra = (256 * 128 * (64 * 48 - 32 * 24) + 512 * 256 * (32 * 24 - 16 * 12)
                         + 1024 * 512 * (16 * 12 - 8 * 6)) / 1024 ** 3
    assert sb["hrnet_gflops"] + torchvision_extra == pytest.approx(8.99, abs=0.01)
    assert fp["hrnet_gflops"] + torchvision_extra == pytest.approx(3.83, abs=0.01)
