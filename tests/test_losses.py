"""Losses on hand-made tensors: focal L2 (Simple Pose §4), masked L2, the
multi-scale/stack weights, RCE and SimpleBaseline MSE (FasterPose §3)."""
import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
import keras  # noqa: E402

from keras_pose import losses  # noqa: E402
from keras_pose.skeleton import COCO  # noqa: E402

from helpers import assert_keras_roundtrip  # noqa: E402

RNG = np.random.default_rng(0)


def _pack_bu(target, mask):
    return np.concatenate([target, mask], axis=-1).astype(np.float32)


def _np_focal(pred, target, mask, w, gamma=1.0, alpha=0.0, beta=0.0, thr=0.01):
    fg = target >= np.float32(thr)
    u = np.where(fg, 1 - pred + alpha, pred + beta)
    f = np.abs(u) ** gamma
    return ((pred - target) ** 2 * f * mask * w).sum(axis=(1, 2, 3))


def _random_bu(b=2, h=4, w=5, c=3):
    pred = RNG.uniform(-0.2, 1.2, (b, h, w, c)).astype(np.float32)
    target = RNG.uniform(0, 1, (b, h, w, c)).astype(np.float32)
    target[target < 0.4] = 0.0  # plenty of background
    mask = (RNG.uniform(size=(b, h, w, 1)) > 0.3).astype(np.float32)
    return pred, target, mask


def test_focal_threshold_is_inclusive_at_001():
    # One pixel per target value: below, exactly at, and above the threshold.
    target = np.array([0.0, 0.009, 0.01, 0.011, 0.5], np.float32).reshape(1, 1, 5, 1)
    pred = np.full_like(target, 0.3)
    mask = np.ones((1, 1, 5, 1), np.float32)
    loss = losses.FocalL2Loss(channel_weights=[1.0], reduction=None)
    got = np.asarray(loss(_pack_bu(target, mask), pred))
    # Per-pixel: background factor |P| = 0.3, foreground |1 - P| = 0.7.
    per_px = (pred - target) ** 2 * np.array([0.3, 0.3, 0.7, 0.7, 0.7]).reshape(1, 1, 5, 1)
    np.testing.assert_allclose(got, per_px.sum(axis=(1, 2, 3)), rtol=1e-6)
    # A threshold above 0.01 moves the 0.01 and 0.011 pixels to the background.
    got2 = np.asarray(losses.FocalL2Loss(channel_weights=[1.0], threshold=0.02, reduction=None)(
        _pack_bu(target, mask), pred))
    per_px2 = (pred - target) ** 2 * np.array([0.3, 0.3, 0.3, 0.3, 0.7]).reshape(1, 1, 5, 1)
    np.testing.assert_allclose(got2, per_px2.sum(axis=(1, 2, 3)), rtol=1e-6)


@pytest.mark.parametrize("params", [dict(), dict(gamma=2.0, alpha=0.1, beta=0.02)])
def test_focal_matches_numpy_with_mask_and_channel_weights(params):
    pred, target, mask = _random_bu()
    w = np.array([1.0, 3.0, 0.1], np.float32)
    loss = losses.FocalL2Loss(channel_weights=w, reduction=None, **params)
    got = np.asarray(loss(_pack_bu(target, mask), pred))
    assert got.shape == (2,)
    np.testing.assert_allclose(got, _np_focal(pred, target, mask, w, **params), rtol=1e-5)
    # Batch reduction: sum_over_batch_size is the mean of the per-sample values.
    mean = float(losses.FocalL2Loss(channel_weights=w, **params)(_pack_bu(target, mask), pred))
    np.testing.assert_allclose(mean, got.mean(), rtol=1e-5)


def test_masked_pixels_and_zero_weight_channels_contribute_nothing():
    pred, target, mask = _random_bu()
    w = np.array([1.0, 0.0, 2.0], np.float32)
    loss = losses.FocalL2Loss(channel_weights=w, reduction=None)
    base = np.asarray(loss(_pack_bu(target, mask), pred))
    # Change predictions where the mask is 0 and on the zero-weight channel.
    pred2 = pred.copy()
    pred2[..., 1] += 5.0
    pred2 += 3.0 * (1 - mask)
    np.testing.assert_allclose(np.asarray(loss(_pack_bu(target, mask), pred2)), base, rtol=1e-6)
    # ...but a change inside the mask on a weighted channel does matter.
    pred3 = pred.copy()
    pred3[..., 2] += 0.5 * mask[..., 0]
    assert np.all(np.asarray(loss(_pack_bu(target, mask), pred3)) != base)


def test_default_channel_weights_come_from_spec():
    loss = losses.FocalL2Loss()
    np.testing.assert_array_equal(loss.channel_weights, COCO.channel_weights())
    c = COCO.num_channels
    pred = np.full((1, 2, 2, c), 0.5, np.float32)
    y = _pack_bu(np.zeros((1, 2, 2, c), np.float32), np.ones((1, 2, 2, 1), np.float32))
    # Background everywhere: per pixel 0.25 * |0.5| * w_c.
    np.testing.assert_allclose(float(loss(y, pred)), 4 * 0.125 * COCO.channel_weights().sum(), rtol=1e-5)
    with pytest.raises(ValueError, match="C \\+ 1"):
        loss(y[..., :-2], pred)


def test_paper_variant_and_masked_l2():
    p = losses.FocalL2Loss.paper()
    assert (p.gamma, p.alpha, p.beta) == (2.0, 0.1, 0.02)
    pred, target, mask = _random_bu(c=COCO.num_channels)
    y = _pack_bu(target, mask)
    w = COCO.channel_weights()
    np.testing.assert_allclose(np.asarray(losses.FocalL2Loss.paper(reduction=None)(y, pred)),
                               _np_focal(pred, target, mask, w, 2.0, 0.1, 0.02), rtol=1e-5)
    l2 = np.asarray(losses.MaskedL2Loss(reduction=None)(y, pred))
    np.testing.assert_allclose(l2, ((pred - target) ** 2 * mask * w).sum(axis=(1, 2, 3)), rtol=1e-5)


@pytest.mark.parametrize("gamma,alpha,beta", [(1.0, 0.0, 0.0), (2.0, 0.1, 0.02)])
def test_gradient_flows_through_focal_factor(gamma, alpha, beta):
    pred, target, mask = _random_bu()
    pred[0, 0, 0, 0] = 0.0  # u = 0 on background (gamma=1, beta=0): d|u|/du = 0 there
    target[0, 0, 0, 0] = 0.0
    w = np.array([1.0, 3.0, 0.1], np.float32)
    loss = losses.FocalL2Loss(gamma, alpha, beta, channel_weights=w, reduction="sum")
    p = tf.Variable(pred)
    with tf.GradientTape() as tape:
        value = loss(_pack_bu(target, mask), p)
    grad = tape.gradient(value, p).numpy()
    fg = target >= np.float32(0.01)
    u = np.where(fg, 1 - pred + alpha, pred + beta)
    du = np.where(fg, -1.0, 1.0)
    f = np.abs(u) ** gamma
    df = gamma * np.abs(u) ** (gamma - 1) * np.sign(u) * du
    d = pred - target
    expected = (2 * d * f + d ** 2 * df) * mask * w
    np.testing.assert_allclose(grad, expected, rtol=1e-4, atol=1e-6)
    # A detached factor would give 2(P-G)f only: make sure the difference is real.
    assert np.abs(grad - 2 * d * f * mask * w).max() > 1e-3


def test_float16_inputs_compute_in_float32():
    pred, target, mask = _random_bu()
    w = np.array([1.0, 3.0, 0.1], np.float32)
    loss = losses.FocalL2Loss(channel_weights=w, reduction=None)
    out = loss(_pack_bu(target, mask).astype(np.float16), tf.constant(pred, tf.float16))
    assert out.dtype == tf.float32
    ref = _np_focal(pred.astype(np.float16).astype(np.float32),
                    target.astype(np.float16).astype(np.float32), mask, w)
    np.testing.assert_allclose(np.asarray(out), ref, rtol=1e-5)


def test_bottom_up_loss_weights_values():
    w = losses.bottom_up_loss_weights(2)
    assert len(w) == 10
    lam = np.array(losses.DEFAULT_SCALE_WEIGHTS)
    np.testing.assert_allclose(w[:5], lam / 8.7 / 2)
    np.testing.assert_allclose(w[5:], w[:5])
    np.testing.assert_allclose(sum(w), 1.0)
    with pytest.raises(ValueError):
        losses.bottom_up_loss_weights(0)


def test_compiled_multi_output_total_matches_spec_formula():
    """Compiled total with the weights == (sum_j l_j mean_t L_tj) / sum(l) / B (§4)."""
    keras.utils.set_random_seed(1)
    stacks, scales, c, b = 2, 2, 3, 3
    lam = (0.3, 2.0)
    inp = keras.Input((8, 8, 2))
    outs = []
    for t in range(stacks):
        x = keras.layers.Conv2D(c, 1, name=f"s{t}_x0")(inp)
        outs += [x, keras.layers.AveragePooling2D(2, name=f"s{t}_x1")(x)]
    model = keras.Model(inp, outs)
    cw = np.array([1.0, 3.0, 0.1], np.float32)
    loss = losses.FocalL2Loss(channel_weights=cw)
    model.compile(loss=[loss] * (stacks * scales),
                  loss_weights=losses.bottom_up_loss_weights(stacks, lam), jit_compile=False)
    x = RNG.uniform(0, 1, (b, 8, 8, 2)).astype(np.float32)
    ys = []
    for j in range(scales):
        s = 8 // 2 ** j
        tgt = RNG.uniform(0, 1, (b, s, s, c)).astype(np.float32) * (RNG.uniform(size=(b, s, s, c)) > 0.5)
        ys.append(_pack_bu(tgt, (RNG.uniform(size=(b, s, s, 1)) > 0.2).astype(np.float32)))
    y = ys * stacks
    total = model.evaluate(x, y, batch_size=b, verbose=0, return_dict=True)["loss"]
    preds = model.predict(x, verbose=0)
    l_tj = np.zeros((stacks, scales))
    for t in range(stacks):
        for j in range(scales):
            yt = ys[j]
            l_tj[t, j] = _np_focal(preds[t * scales + j], yt[..., :c], yt[..., c:], cw).sum()
    expected = (np.asarray(lam) * l_tj.mean(axis=0)).sum() / sum(lam) / b
    np.testing.assert_allclose(total, expected, rtol=1e-4)


def _pack_td(target, weight):
    return np.concatenate([target, np.broadcast_to(weight, target.shape)], axis=-1).astype(np.float32)


def test_rce_equals_tf_sigmoid_cross_entropy():
    z = RNG.normal(0, 4, (2, 4, 3, 5)).astype(np.float32)
    z[0, 0, 0, 0] = 80.0  # large logits stay finite in the stable form
    z[0, 0, 0, 1] = -80.0
    y = RNG.uniform(0, 1, z.shape).astype(np.float32)
    w = np.array([1, 0, 1, 1, 0.5], np.float32).reshape(1, 1, 1, 5)
    got = np.asarray(losses.RCELoss(reduction=None)(_pack_td(y, w), z))
    ref = tf.nn.sigmoid_cross_entropy_with_logits(labels=y, logits=z).numpy()
    np.testing.assert_allclose(got, (ref * w).mean(axis=(1, 2, 3)), rtol=1e-5)
    assert np.all(np.isfinite(got))


def test_zero_weight_joints_contribute_nothing_td():
    z = RNG.normal(0, 2, (2, 4, 3, 4)).astype(np.float32)
    y = RNG.uniform(0, 1, z.shape).astype(np.float32)
    w = np.ones((2, 1, 1, 4), np.float32)
    w[0, ..., 2] = 0.0
    for loss in (losses.RCELoss(reduction=None), losses.HeatmapMSELoss(reduction=None)):
        base = np.asarray(loss(_pack_td(y, w), z))
        z2 = z.copy()
        z2[0, ..., 2] += 10.0
        np.testing.assert_allclose(np.asarray(loss(_pack_td(y, w), z2)), base, rtol=1e-6)
        z2[1, ..., 2] += 1.0  # sample 1 has the joint weighted: its value changes
        assert np.asarray(loss(_pack_td(y, w), z2))[1] != base[1]


def test_heatmap_mse_value():
    p = RNG.normal(0, 1, (2, 3, 3, 2)).astype(np.float32)
    g = RNG.uniform(0, 1, p.shape).astype(np.float32)
    w = np.array([1.0, 0.0], np.float32).reshape(1, 1, 1, 2)
    got = float(losses.HeatmapMSELoss()(_pack_td(g, w), p))
    np.testing.assert_allclose(got, (0.5 * (w * (p - g)) ** 2).mean(), rtol=1e-5)
    with pytest.raises(ValueError, match="2K"):
        losses.HeatmapMSELoss()(_pack_td(g, w)[..., :3], p)


def test_get_loss_ids():
    assert isinstance(losses.get_loss("l2"), losses.MaskedL2Loss)
    assert losses.get_loss("focal_l2").gamma == 1.0
    assert losses.get_loss("FOCAL_L2_PAPER").gamma == 2.0
    assert isinstance(losses.get_loss("rce"), losses.RCELoss)
    assert isinstance(losses.get_loss("mse"), losses.HeatmapMSELoss)
    with pytest.raises(ValueError, match="unknown loss"):
        losses.get_loss("huber")


def test_serialization_roundtrip(tmp_path):
    pred, target, mask = _random_bu()
    y = _pack_bu(target, mask)
    focal = losses.FocalL2Loss(gamma=2.0, alpha=0.1, beta=0.02, threshold=0.008,
                               channel_weights=[1.0, 3.0, 0.1])
    back = assert_keras_roundtrip(focal, (y, pred), tmp_path)
    assert (back.gamma, back.threshold) == (2.0, 0.008)
    np.testing.assert_allclose(back.channel_weights, [1.0, 3.0, 0.1])
    assert_keras_roundtrip(losses.MaskedL2Loss(channel_weights=[1.0, 2.0, 1.0]), (y, pred), tmp_path)
    z = RNG.normal(0, 1, (2, 3, 3, 2)).astype(np.float32)
    ytd = _pack_td(RNG.uniform(0, 1, z.shape), np.ones((1, 1, 1, 2)))
    assert_keras_roundtrip(losses.RCELoss(), (ytd, z), tmp_path)
    assert_keras_roundtrip(losses.HeatmapMSELoss(), (ytd, z), tmp_path)


@pytest.mark.slow
def test_losses_under_mirrored_strategy():
    """1 vs 2 replicas, same global batch, one SGD step -> the same weights (subprocess)."""
    import json
    import pathlib
    import subprocess
    import sys

    script = pathlib.Path(__file__).with_name("_distributed_loss_check.py")
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    for kind in ("bu", "td"):
        assert res[kind]["update"] > 1e-3, res  # the step did move the weights
        # A loss scaled by the per-replica batch would be off by ~update / 2.
        assert res[kind]["max_dw"] < 1e-4 * res[kind]["update"], res
