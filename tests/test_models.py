"""Models: IMHN, DepthToSpace, presets, the tf_keras twin (top-down: test_models_topdown.py).

Tiny models only (imhn_test: 1 stack, order 2, width 16, 64x64; MobileNetV2
alpha 0.35 at 128x96); the paper-size IMHN is built once, in a slow test.
"""
import functools

import keras  # Keras 3 first (docs/tf_stack_notes.md §2); tf_keras is imported inside one test only
import numpy as np
import pytest
from helpers import assert_keras_roundtrip

from keras_pose.models import blocks, presets
from keras_pose.models.configs import IMHNConfig
from keras_pose.models.heads import inference_model
from keras_pose.models.imhn import build_imhn


# ------------------------------------------------------------ analytic counts
def _conv(k, cin, cout, bias=False):
    return k * k * cin * cout + (cout if bias else 0)


def _cba(k, cin, cout):  # conv (no bias) + BN gamma/beta
    return _conv(k, cin, cout) + 2 * cout


def _res(cin, cout):
    m = cout // 2
    return (_cba(1, cin, m) + _cba(3, m, m) + _cba(1, m, cout)
            + (_cba(1, cin, cout) if cin != cout else 0))


def imhn_trainable_params(c: IMHNConfig) -> int:
    """Trainable parameters of an IMHN, layer by layer from docs/method_bottom_up.md §3
    (conv kernels, conv biases of the predictions, BN gamma/beta, SE dense)."""
    w = c.width
    stem = _cba(7, 3, w // 4) + _res(w // 4, w // 2) + _res(w // 2, w // 2)
    stem += 6 * _cba(3, w // 2, w // 2) if c.dilated_stem else _res(w // 2, w)
    ch = [w + c.growth * i for i in range(c.order + 1)]
    hourglass = sum(_res(ch[i], ch[i]) + _res(ch[i], ch[i + 1]) + _res(ch[i + 1], ch[i])
                    + _cba(3, ch[i], ch[i]) for i in range(c.order)) + _res(ch[-1], ch[-1])
    fw, hid = c.feature_width, max(1, c.feature_width // c.se_reduction)
    se = fw * hid + hid + hid * fw + fw
    features = sum(_cba(3, cj, fw) + _cba(3, fw, fw) + se for cj in ch)
    heads = len(ch) * _conv(1, fw, c.out_channels, bias=True)
    merges = sum(_cba(1, c.out_channels, cj) + _cba(1, fw, cj) for cj in ch)
    return stem + c.stacks * (hourglass + features + heads) + (c.stacks - 1) * merges


def _trainable(model):
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


def _bn_channels(model):
    return sum(l.gamma.shape[0] for l in model.layers
               if isinstance(l, keras.layers.BatchNormalization))


@functools.lru_cache(maxsize=None)
def _preset_model(name):
    """Each preset is built once per session (tests must not change its weights)."""
    return presets.from_preset(name)


def _rgb(shape, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, shape).astype("float32")


# ------------------------------------------------------------------- IMHN
@pytest.fixture(scope="module")
def imhn2():
    """imhn_test with 2 stacks, so the cross-stack identity mappings are built."""
    return build_imhn(presets.get_preset("imhn_test", stacks=2))


def test_imhn_outputs_names_shapes_and_params(imhn2):
    cfg = presets.get_preset("imhn_test", stacks=2)
    assert imhn2.output_names == ["s0_x0", "s0_x1", "s0_x2", "s1_x0", "s1_x1", "s1_x2"]
    ys = imhn2(_rgb((2, 64, 64, 3)))
    assert [tuple(y.shape) for y in ys] == [(2, 16, 16, 50), (2, 8, 8, 50), (2, 4, 4, 50)] * 2
    assert all(y.dtype == "float32" for y in ys)
    # Trainable params follow the layer list of docs/method_bottom_up.md §3 exactly; count_params adds the
    # BN moving mean/variance (2 per BN channel).
    assert _trainable(imhn2) == imhn_trainable_params(cfg) == 99_848
    assert imhn2.count_params() == _trainable(imhn2) + 2 * _bn_channels(imhn2) == 102_592


def test_imhn_layer_conventions(imhn2):
    bns = [l for l in imhn2.layers if isinstance(l, keras.layers.BatchNormalization)]
    assert bns and all(l.momentum == 0.9 and l.epsilon == 1e-5 for l in bns)
    leaky = [l for l in imhn2.layers if isinstance(l, keras.layers.LeakyReLU)]
    assert leaky and all(abs(l.negative_slope - 0.01) < 1e-9 for l in leaky)
    assert isinstance(imhn2.layers[1], keras.layers.Rescaling)
    # Small init (§3.4): conv kernels N(0, 0.001^2) -> initial maps ~0.
    k = imhn2.get_layer("s0_hg_l0_skip_b_conv").kernel.numpy()
    assert 0.0005 < k.std() < 0.002
    # Identity mappings: stack 1 adds the cache at its input and at all 3 scales.
    for name in ["s1_input", "s1_id0", "s1_id1", "s1_id2"]:
        assert isinstance(imhn2.get_layer(name), keras.layers.Add)


def test_stem_conv_is_aligned_like_pytorch_symmetric_padding():
    """The 7x7 stride-2 stem conv must pad 3 on every side (PyTorch), not TF 'same' (2/3)."""
    model = build_imhn(presets.get_preset("imhn_test"))
    layer = model.get_layer("stem_conv7_conv")
    rng = np.random.default_rng(1)
    kernel = rng.normal(0, 0.1, layer.kernel.shape).astype("float32")
    layer.set_weights([kernel])
    sub = keras.Model(model.inputs[0], layer.output)
    x = _rgb((1, 64, 64, 3), seed=2)
    got = np.asarray(sub(x))
    xp = np.pad(x / 255.0, ((0, 0), (3, 3), (3, 3), (0, 0)))
    win = np.lib.stride_tricks.sliding_window_view(xp, (7, 7), axis=(1, 2))[:, ::2, ::2]
    ref = np.einsum("bhwcyx,yxco->bhwo", win, kernel)  # window axes: (..., C, 7, 7)
    assert got.shape == ref.shape == (1, 32, 32, 4)
    np.testing.assert_allclose(got, ref, atol=1e-5)
    same = np.asarray(keras.ops.conv(x / 255.0, kernel, strides=2, padding="same"))
    assert np.abs(same - ref).max() > 1e-2  # TF 'same' would be shifted by a pixel


def test_imhn_inference_model(imhn2):
    """The descriptor's inference output: the last stack's finest map."""
    x = _rgb((2, 64, 64, 3), seed=3)
    full = imhn2(x)
    output = presets.get_preset("imhn_test", stacks=2).inference_output
    assert output == {"layer": "s1_x0", "activation": None}
    inf = inference_model(imhn2, output)
    assert inf.output_shape == (None, 16, 16, 50)
    np.testing.assert_allclose(np.asarray(inf(x)), np.asarray(full[3]), atol=1e-6)
    # Only the layers the last finest output needs are kept.
    names = {l.name for l in inf.layers}
    assert "s1_x0" in names and "s1_x1" not in names and "s0_x0" in names
    assert inf.count_params() < imhn2.count_params()
    one = inference_model(imhn2, output, batch_size=1)
    assert one.input_shape == (1, 64, 64, 3)
    assert not any(isinstance(l, keras.Model) for l in one.layers)
    np.testing.assert_allclose(np.asarray(one(x[:1])), np.asarray(full[3][:1]), atol=1e-6)


def test_imhn_mixed_precision_outputs_stay_float32():
    old = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_float16")
    try:
        model = build_imhn(IMHNConfig(stacks=1, width=8, growth=0, order=1,
                                      feature_width=8, se_reduction=4, input_size=(32, 32)))
    finally:
        keras.config.set_dtype_policy(old)
    assert model.get_layer("stem_conv7_conv").compute_dtype == "float16"
    ys = model(_rgb((1, 32, 32, 3)))
    assert [y.dtype for y in ys] == ["float32", "float32"]


def test_imhn_config_validation():
    with pytest.raises(ValueError, match="multiples of 64"):
        IMHNConfig(input_size=(500, 512)).validate()
    with pytest.raises(ValueError, match="width must be a multiple of 4"):
        IMHNConfig(width=30).validate()
    with pytest.raises(ValueError, match="growth"):
        IMHNConfig(growth=3).validate()
    cfg = IMHNConfig(order=2, input_size=(64, 32))
    cfg.validate()
    assert cfg.num_scales == 3 and cfg.output_sizes() == [(16, 8), (8, 4), (4, 2)]
    assert IMHNConfig.from_json(cfg.to_json()) == cfg


def test_imhn_roundtrip(tmp_path):
    model = build_imhn(presets.get_preset("imhn_test"))
    assert_keras_roundtrip(model, _rgb((1, 64, 64, 3)), tmp_path)


@pytest.mark.slow
def test_paper_imhn_parameter_counts():
    """The 4-stack 512 model has exactly the analytic 128,998,760 trainable
    params (docs/method_bottom_up.md §3.5: ~129.0 M; stem 1.01 M, 22.4 M hourglass + 8.9 M features +
    0.06 M heads per stack, 0.79 M per merge). ``count_params()`` is larger by the
    BN moving mean/variance (2 x 103,872 BN channels = 207,744), which are state,
    not trainable weights, and which the analytic count excludes."""
    cfg = presets.get_preset("imhn_4s_512")
    assert imhn_trainable_params(cfg) == 128_998_760
    model = build_imhn(cfg)
    assert _trainable(model) == 128_998_760
    assert model.count_params() == 129_206_504 == 128_998_760 + 2 * _bn_channels(model)
    assert len(model.outputs) == 20
    assert model.outputs[-1].shape == (None, 8, 8, 50)
    # 3-stack 384 variant: the analytic ~96.8 M.
    cfg3 = presets.get_preset("imhn_3s_384")
    assert imhn_trainable_params(cfg3) == 96_802_590
    model3 = build_imhn(cfg3)
    assert _trainable(model3) == 96_802_590
    assert [tuple(o.shape[1:3]) for o in model3.outputs[:5]] == [(96, 96), (48, 48), (24, 24),
                                                                 (12, 12), (6, 6)]


# ----------------------------------------------------------- DepthToSpace
def test_depth_to_space_order_and_roundtrip(tmp_path):
    r, c = 2, 3
    x = np.arange(1 * 2 * 3 * c * r * r, dtype="float32").reshape(1, 2, 3, c * r * r)
    layer = blocks.DepthToSpace(r)
    y = np.asarray(layer(x))
    assert y.shape == (1, 4, 6, c)
    for i in range(r):
        for j in range(r):  # TF DCR order: out[y*r+i, x*r+j, k] = in[y, x, (i*r+j)*C + k]
            np.testing.assert_array_equal(y[:, i::r, j::r, :], x[..., (i * r + j) * c:(i * r + j + 1) * c])
    assert_keras_roundtrip(blocks.DepthToSpace(4), _rgb((2, 3, 2, 32)), tmp_path)
    with pytest.raises(ValueError, match="block_size"):
        blocks.DepthToSpace(0)


# -------------------------------------------------------- fused BatchNorm
@pytest.mark.parametrize("shape", [(4, 6, 5, 8), (2, 1, 1, 3)])
def test_fused_batchnorm_matches_keras_layer(shape, tmp_path):
    """Outputs, gradients and moving statistics equal Keras' own layer's, in
    training and inference (the fused op's unbiased variance is undone)."""
    import tensorflow as tf

    x = tf.constant(np.random.default_rng(0).normal(3.0, 2.0, shape).astype("float32"))
    kw = dict(momentum=0.9, epsilon=1e-5)
    ref, fused = keras.layers.BatchNormalization(**kw), blocks.FusedBatchNormalization(**kw)
    ref.build(shape), fused.build(shape)
    rng = np.random.default_rng(1)
    for layer in (ref, fused):  # same non-trivial weights in both
        layer.set_weights([rng.normal(1, .2, shape[-1]), rng.normal(0, .2, shape[-1]),
                           rng.normal(0, .2, shape[-1]), rng.uniform(.5, 2, shape[-1])])
        rng = np.random.default_rng(1)
    grads = []
    for layer in (ref, fused):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x, training=True)
            loss = tf.reduce_sum(y * tf.sin(x))
        grads.append([g.numpy() for g in tape.gradient(loss, [x, layer.gamma, layer.beta])])
        grads[-1].append(y.numpy())
    for a, b in zip(*grads):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
    for a, b in zip(ref.get_weights(), fused.get_weights()):  # moving mean / variance
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ref(x, training=False), fused(x, training=False), rtol=1e-5,
                               atol=1e-5)
    # Masks and synchronized statistics fall back to Keras' path; the layer round-trips.
    sync = blocks.FusedBatchNormalization(synchronized=True, **kw)
    assert not sync._fusable(x, None) and fused._fusable(x, None)
    inp = keras.Input(shape[1:])
    m = keras.Model(inp, blocks.FusedBatchNormalization(**kw)(inp))
    assert_keras_roundtrip(m, x.numpy(), tmp_path)


# ------------------------------------------------------------ tf_keras twin
def _randomize(model, rng):
    """Replace init weights by O(1)-output values so the comparison means something."""
    out = []
    for w in model.weights:
        s, p = tuple(w.shape), w.path
        if "variance" in p or "gamma" in p:
            out.append(rng.uniform(0.5, 1.5, s))
        elif len(s) > 1:
            out.append(rng.normal(0, 1 / np.sqrt(np.prod(s[:-1])), s))
        else:
            out.append(rng.normal(0, 0.1, s))
    model.set_weights([v.astype("float32") for v in out])


# 2 stacks so the identity-mapping merges are covered; order 1 keeps it to ~200 layers.
@pytest.mark.parametrize("preset,overrides", [
    ("imhn_test", {"stacks": 2, "order": 1, "width": 8, "growth": 4, "feature_width": 8,
                   "input_size": (32, 32)}),
    ("fasterpose_tiny", {})])
def test_tf_keras_twin_matches(preset, overrides):
    tf_keras = pytest.importorskip("tf_keras")
    cfg = presets.get_preset(preset, **overrides)
    m3 = presets.build_model(cfg)
    m2 = presets.build_model(cfg, K=tf_keras)
    assert [w.shape for w in m3.get_weights()] == [w.shape for w in m2.get_weights()]
    # Keras 3 normalises with the fused subclass; tf_keras' own layer is fused already.
    names3 = [type(l).__name__.replace("FusedBatch", "Batch") for l in m3.layers]
    assert names3 == [type(l).__name__ for l in m2.layers]
    _randomize(m3, np.random.default_rng(9))
    m2.set_weights(m3.get_weights())
    x = _rgb((2, *cfg.input_size, 3), seed=10)
    a, b = m3(x), m2(x)
    a, b = (a, b) if isinstance(a, list) else ([a], [b])
    for u, v in zip(a, b):
        u, v = np.asarray(u), np.asarray(v)
        assert np.abs(u).max() > 0.1  # outputs are not trivially ~0
        np.testing.assert_allclose(v, u, atol=1e-5)
    assert blocks.depth_to_space_class(tf_keras) is blocks.depth_to_space_class(tf_keras)


# ----------------------------------------------------------- presets, FLOPs
PINNED = {  # preset: (count_params, trainable)
    "imhn_test": (51_054, 49_734),
    "imhn_tiny": (526_374, 520_566),
    "imhn_mobile": (2_670_196, 2_650_516),
}


@pytest.mark.parametrize("name", sorted(PINNED))
def test_preset_shapes_and_pinned_params(name):
    cfg = presets.get_preset(name)
    model = _preset_model(name)
    h, w = cfg.input_size
    assert model.input_shape == (None, h, w, 3)
    sizes = cfg.output_sizes() * cfg.stacks
    assert model.output_names == cfg.output_names()
    assert [tuple(o.shape) for o in model.outputs] == [(None, a, b, 50) for a, b in sizes]
    assert _trainable(model) == imhn_trainable_params(cfg)
    assert (model.count_params(), _trainable(model)) == PINNED[name]


def test_list_and_get_presets():
    names = presets.list_presets()
    for n in ["imhn_4s_512", "imhn_3s_384", "fasterpose_r50_256x192", "fasterpose_r50_384x288",
              "simple_baseline_r50_256x192", "imhn_mobile", "fasterpose_mnv2_256x192",
              "simple_baseline_mnv2_256x192", "imhn_tiny", "imhn_test", "fasterpose_tiny",
              "simple_baseline_tiny"]:
        assert n in names
        presets.get_preset(n).validate()
    a = presets.get_preset("imhn_test")
    a.stacks = 7
    assert presets.get_preset("imhn_test").stacks == 1  # a copy
    assert presets.get_preset("fasterpose_r50_384x288").output_size == (96, 72)
    with pytest.raises(ValueError, match="unknown preset"):
        presets.get_preset("nope")
    with pytest.raises(ValueError, match="no field"):
        presets.get_preset("imhn_test", depth=3)
