"""Fuzz both decoders: any map of a legal shape decodes, in bounded time; a wrong shape is refused.

Seeded: random, constant, sparse-peak, negative, huge, tiny and NaN/inf maps of
every legal shape (body-part codec: 1 x 1 up to 40 x 40 cells, the minimal and the
full channel count; heatmap codec: its map sizes from 3 x 3, single and batched, any K).
The body-part codec refuses non-finite and absurdly large (|v| > 1e6) maps with a
one-line ValueError (a broken model output must not be decoded into persons);
everything else must return valid, finite poses. Whole file well under 60 s.
"""
import time

import numpy as np
import pytest

from keras_pose.codecs import BodyPartsCodec, HeatmapCodec, HeatmapCodecConfig
from keras_pose.structures import Poses

CASES = 150          # per decoder
MAX_SECONDS = 2.0    # per decode; typical maps take milliseconds


def _kinds():
    return ("uniform", "constant", "zeros", "negative", "huge", "tiny", "sparse", "nan", "inf",
            "mixed_nonfinite", "alternating")


def _fill(rng, kind, shape):
    if kind == "uniform":
        return rng.random(shape, dtype=np.float32)
    if kind == "constant":
        return np.full(shape, rng.uniform(-2, 2), np.float32)
    if kind == "zeros":
        return np.zeros(shape, np.float32)
    if kind == "negative":
        return -rng.random(shape, dtype=np.float32) * rng.choice([1.0, 1e3])
    if kind == "huge":
        return (rng.random(shape, dtype=np.float32) * 2 - 1) * np.float32(3e38)
    if kind == "tiny":
        return rng.random(shape, dtype=np.float32) * np.float32(1e-38)
    if kind == "sparse":
        m = np.zeros(shape, np.float32)
        idx = tuple(rng.integers(0, s, 30) for s in shape)
        m[idx] = rng.uniform(0.2, 1.0, 30)
        return m
    if kind == "alternating":
        m = np.indices(shape).sum(0) % 2
        return m.astype(np.float32)
    m = rng.random(shape, dtype=np.float32)
    flat = m.reshape(-1)
    pick = rng.integers(0, flat.size, max(1, flat.size // 10))
    flat[pick] = {"nan": np.nan, "inf": np.inf}.get(kind, rng.choice([np.nan, np.inf, -np.inf]))
    return m


def _timed(fn, *args):
    t = time.perf_counter()
    out = fn(*args)
    dt = time.perf_counter() - t
    assert dt < MAX_SECONDS, f"decode took {dt:.2f} s"
    return out


def test_body_parts_decode_never_crashes():
    codec = BodyPartsCodec()
    spec = codec.spec
    channels = (spec.num_limbs + spec.num_internal, spec.num_channels)
    rng = np.random.default_rng(17)
    seen = set()
    for i in range(CASES):
        kind = _kinds()[i % len(_kinds())]
        h, w = (1, 1) if i < len(_kinds()) else tuple(int(v) for v in rng.integers(1, 41, 2))
        shape = (h, w, int(rng.choice(channels)))
        maps = _fill(rng, kind, shape)
        height = None if i % 3 else float(rng.choice([1.0, 4 * h, 1e6]))
        if not np.isfinite(maps).all() or kind == "huge":
            with pytest.raises(ValueError, match="non-finite values|holds values up to"):
                _timed(codec.decode, maps, height)
            seen.add("refused")
            continue
        poses = _timed(codec.decode, maps, height)
        assert isinstance(poses, Poses)
        kp = np.asarray(poses.keypoints)
        assert kp.ndim == 3 and kp.shape[1:] == (spec.num_keypoints, 3) and np.isfinite(kp).all()
        assert np.isfinite(np.asarray(poses.scores)).all()
        seen.add("persons" if len(poses) else "empty")
    assert seen == {"refused", "persons", "empty"}  # the fuzz reached every outcome


@pytest.mark.parametrize("bad", [np.zeros((8, 8)), np.zeros((1, 8, 8, 50)), np.zeros((8, 8, 47)),
                                 np.zeros((0, 8, 50)), "maps", [[1.0, 2.0], [3.0]]])
def test_body_parts_wrong_shapes_are_refused_clearly(bad):
    with pytest.raises(ValueError) as e:
        BodyPartsCodec().decode(bad)
    assert "\n" not in str(e.value) and ("shape" in str(e.value) or "channels" in str(e.value)
                                         or "numeric" in str(e.value) or "empty" in str(e.value))


def _heatmap_codecs():
    return [HeatmapCodec(),  # 256x192 input, 64x48 maps, DARK
            HeatmapCodec(HeatmapCodecConfig(input_size=(64, 48), heatmap_size=(16, 12))),
            HeatmapCodec(HeatmapCodecConfig(input_size=(12, 12), heatmap_size=(3, 3))),
            HeatmapCodec(HeatmapCodecConfig(input_size=(32, 32), heatmap_size=(8, 8),
                                            use_dark=False))]


def test_heatmap_decode_never_crashes():
    rng = np.random.default_rng(23)
    codecs = _heatmap_codecs()
    for i in range(CASES):
        codec = codecs[i % len(codecs)]
        kind = _kinds()[(i // len(codecs)) % len(_kinds())]
        h, w = codec.heatmap_size
        k = int(rng.choice([1, 17, int(rng.integers(2, 30))]))
        batch = i % 2 == 1
        shape = (int(rng.integers(1, 4)), h, w, k) if batch else (h, w, k)
        out = _timed(codec.decode, _fill(rng, kind, shape))
        assert out.shape == (shape[:1] if batch else ()) + (k, 3), (kind, shape, out.shape)
        assert out.dtype == np.float32 and np.isfinite(out).all(), (kind, shape)
        # DARK moves a keypoint at most one map cell from its argmax (UDP: a cell is
        # (in - 1) / (hm - 1) crop pixels), so it stays within a cell of the crop.
        for axis, (size_in, size_hm) in enumerate(zip(codec.config.input_size[::-1], (w, h))):
            cell = (size_in - 1) / (size_hm - 1)
            v = out[..., axis]
            assert (v >= -cell - 1e-3).all() and (v <= size_in - 1 + cell + 1e-3).all(), kind


@pytest.mark.parametrize("shape", [(64, 48), (63, 48, 17), (2, 64, 47, 17), (1, 1, 64, 48, 17)])
def test_heatmap_wrong_shapes_are_refused_clearly(shape):
    with pytest.raises(ValueError, match=r"HeatmapCodec.decode: expected \(N, 64, 48, K\)"):
        HeatmapCodec().decode(np.zeros(shape, np.float32))
