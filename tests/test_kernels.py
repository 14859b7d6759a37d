"""The compiled decoder loops (keras_pose/codecs/_kernels.py) against the NumPy paths they
replace, and the candidate-pair cap (docs/grouping.md)."""
import numpy as np
import pytest

from _reference_decoder import jittered_scene, stick_figures
from keras_pose.codecs import BodyPartsCodec, _assembly, _grouping, _kernels, _peaks
from keras_pose.skeleton import COCO

numba = pytest.importorskip("numba", reason="numba is not installed: the decoder uses its NumPy paths")

CODEC = BodyPartsCodec(max_limb_pairs=0)


def _maps(kind, seed=0, size=512):
    rng = np.random.default_rng(seed)
    if kind == "noise":
        return rng.random((size // 4, size // 4, 50), dtype=np.float32)
    persons = {"few": 3, "crowd": 24, "blurred": 12}[kind]
    maps = CODEC.encode(jittered_scene(rng, stick_figures(rng), persons, size=(size, size),
                                       height_range=(0.27 * size, 0.59 * size)),
                        (size, size))["heatmaps"]
    if kind == "blurred":   # a network's look: softer, weaker, noisy, small negative lobes
        import cv2
        maps = cv2.GaussianBlur(maps, (5, 5), 1.0) * 0.8 + rng.normal(0, 0.03, maps.shape)
    return maps.astype(np.float32)


def _decode(maps, kernels, monkeypatch, grouping):
    for module in (_peaks, _grouping, _assembly):
        monkeypatch.setattr(module, "USE_KERNELS", kernels)
    return BodyPartsCodec(grouping=grouping, max_limb_pairs=0).decode(maps)


@pytest.mark.parametrize("kind", ["few", "crowd", "blurred", "noise"])
@pytest.mark.parametrize("grouping", ["paper", "matched"])
def test_kernels_decode_like_the_numpy_paths(kind, grouping, monkeypatch):
    maps = _maps(kind)
    fast = _decode(maps, True, monkeypatch, grouping)
    slow = _decode(maps, False, monkeypatch, grouping)
    assert len(fast) == len(slow) > 0
    np.testing.assert_allclose(fast.keypoints, slow.keypoints, atol=1e-6)
    np.testing.assert_allclose(fast.scores, slow.scores, atol=1e-6)


@pytest.mark.parametrize("kind", ["few", "crowd", "blurred", "noise"])
def test_seed_kernel_finds_the_numpy_seeds(kind):
    k0 = COCO.keypoint_start
    maps = _maps(kind)
    kmaps = maps[:, :, k0:k0 + COCO.num_internal]      # a strided channel slice
    low = 0.1 / _peaks.overshoot(4)
    sr, sq, st, primary, val, above = _kernels.seeds(kmaps, np.float32(low),
                                                     np.float32(_peaks.NEAR_TOP))
    ref = _peaks._seeds(kmaps, low)   # noise: NumPy's dilation path, else its sparse one
    for got, want in zip((sr, sq, st, primary, above), ref):
        np.testing.assert_array_equal(got, want)
    assert (above > _peaks.NOISE_FRACTION * kmaps.size) == (kind == "noise")
    np.testing.assert_array_equal(val, kmaps[sr, sq, st])
    assert sr.size > 0


@pytest.mark.parametrize("kind, stride", [("few", 4), ("crowd", 4), ("blurred", 4),
                                          ("noise", 4), ("crowd", 2), ("blurred", 8)])
def test_shared_patches_find_the_per_seed_maxima(kind, stride):
    """Seeds next to a 3x3 maximum share its patch: the same maxima, offsets and scores
    as one patch per seed, compiled or in NumPy."""
    size = 512 if stride == 4 else 64 * stride
    k0 = COCO.keypoint_start
    kmaps = _maps(kind, size=size)[:, :, k0:k0 + COCO.num_internal]
    if stride != 4:   # the same maps read at another stride
        kmaps = np.ascontiguousarray(kmaps[:size // stride, :size // stride])
    sr, sq, st, primary, *_ = _kernels.seeds(kmaps, np.float32(0.1 / _peaks.overshoot(stride)),
                                             np.float32(_peaks.NEAR_TOP))
    off1, cells1, u1 = _peaks.patch_operator(stride, 2)
    off2, cells2, u2 = _peaks.patch_operator(stride, 2, 2)
    th = np.float32(0.1)
    found = {share: _kernels.patch_peaks(kmaps, sr, sq, st, primary, u2, cells2, off2,
                                         int(off1[0] - off2[0]), off1.size, stride, th, 2, share)
             for share in (False, True)}
    numpy = _peaks._patch_peaks(kmaps, sr, sq, st, u1, cells1, off1, stride, th, 2)
    np.testing.assert_array_equal(found[False][0], numpy[0])     # one patch per seed: in order
    for got, want in zip(found[False][1:], numpy[1:]):
        np.testing.assert_allclose(got, want, atol=1e-6)
    rows = [set(zip(st[r[0]].tolist(), *(a.tolist() for a in r[1:]))) for r in found.values()]
    assert rows[0] == rows[1] and len(rows[0]) > 0
    if kind == "crowd":
        assert (~primary).sum() > primary.sum()            # most seeds shared a patch ...
        assert found[True][0].size < 0.5 * found[False][0].size  # ... and found each maximum once


def test_noise_keeps_max_candidates_seeds_per_type(monkeypatch):
    """On noise (more than half the cells above the seed level) the patch step gets at
    most max_candidates seeds per type; a 256 x 256 crowd of 24 keeps twice that."""
    seen = []
    for module, name in ((_kernels, "patch_peaks"), (_peaks, "_patch_peaks")):  # either path
        real = getattr(module, name)
        monkeypatch.setattr(module, name, lambda maps, sr, sq, st, *a, real=real:
                            seen.append(np.bincount(st).max()) or real(maps, sr, sq, st, *a))
    k0 = COCO.keypoint_start
    _peaks.find_peaks(_maps("noise")[:, :, k0:k0 + COCO.num_internal], 4, 0.1, 2, 20)
    crowd = _maps("crowd", size=256)[:, :, k0:k0 + COCO.num_internal]
    _peaks.find_peaks(crowd, 4, 0.1, 2, 20)
    assert seen[0] == 20 and 20 < seen[1] <= 40


def test_limb_kernel_rejects_exactly_the_pairs_numpy_rejects(monkeypatch):
    maps = _maps("blurred", seed=3)
    k0 = COCO.keypoint_start
    types, xy, scores = _peaks.find_peaks(maps[:, :, k0:k0 + COCO.num_internal], 4, 0.1, 2, 48)
    sampler = _peaks.CubicSampler(maps, 4)
    cfg = CODEC.config
    out = {}
    for kernels in (True, False):
        monkeypatch.setattr(_grouping, "USE_KERNELS", kernels)
        out[kernels] = _grouping.limb_pairs(sampler, types, xy, scores, COCO, cfg, 512.0)
    for got, want in zip(out[True], out[False]):
        np.testing.assert_allclose(got, want, atol=1e-6)
    assert out[True][0].size > 100


def test_sample_order_is_a_permutation_middle_first():
    table = _kernels.sample_order(20)
    for n in range(1, 21):
        assert sorted(table[n, :n]) == list(range(n))
        assert (table[n, n:] == -1).all()
    assert table[20, 0] in (9, 10) and table[5, 0] == 2


# ------------------------------------------------------------- the pair cap
def test_cap_pairs_keeps_the_strongest_per_type_within_the_budget():
    rng = np.random.default_rng(0)
    counts = rng.integers(5, 40, COCO.num_internal)
    types = np.repeat(np.arange(COCO.num_internal), counts)
    scores = rng.random(types.size)
    fr, to = np.asarray(COCO.limb_from), np.asarray(COCO.limb_to)
    total = int((counts[fr] * counts[to]).sum())
    assert np.array_equal(_grouping.cap_pairs(types, scores, COCO, total), np.arange(types.size))
    assert np.array_equal(_grouping.cap_pairs(types, scores, COCO, 0), np.arange(types.size))
    budget = total // 3
    keep = _grouping.cap_pairs(types, scores, COCO, budget)
    assert np.all(np.diff(keep) > 0)                       # the candidates' order is kept
    kept = np.bincount(types[keep], minlength=COCO.num_internal)
    assert int((kept[fr] * kept[to]).sum()) <= budget
    k = kept.max()
    assert np.array_equal(kept, np.minimum(counts, k))     # one k for every type
    more = np.minimum(counts, k + 1)
    assert int((more[fr] * more[to]).sum()) > budget        # ... the largest that fits
    for t in range(COCO.num_internal):                      # the strongest of each type
        mine = scores[types == t]
        assert np.isclose(scores[keep][types[keep] == t].min(), np.sort(mine)[::-1][kept[t] - 1])


def test_noise_is_decoded_under_the_pair_cap():
    noise = _maps("noise")
    capped = BodyPartsCodec(max_limb_pairs=5000).decode(noise)
    free = BodyPartsCodec(max_limb_pairs=0).decode(noise)
    assert 0 < len(capped) < len(free)
    with pytest.raises(ValueError, match="max_limb_pairs"):
        BodyPartsCodec(max_limb_pairs=-1)


def test_clean_crowd_of_24_is_not_capped_by_default():
    maps = _maps("crowd")
    a, b = BodyPartsCodec().decode(maps), BodyPartsCodec(max_limb_pairs=0).decode(maps)
    assert len(a) == len(b) >= 20
    np.testing.assert_allclose(a.keypoints, b.keypoints)


def test_match_kernel_equals_the_python_matching(monkeypatch):
    """Random pair graphs of many small components: the matching compiled
    (``_kernels.match_limbs``) and run in NumPy/Python choose the same pairs in the
    same order, with and without the confident-pair split, and with tied weights."""
    rng = np.random.default_rng(5)
    sizes = []
    for q in [40, 60, 80] * 6 + [600]:
        limb = np.sort(rng.integers(0, 6, q))
        ia, ib = rng.integers(0, 12, q), rng.integers(0, 12, q)
        _, uniq = np.unique(limb * 1000 + ia * 30 + ib, return_index=True)
        limb, ia, ib = limb[uniq], ia[uniq], ib[uniq]
        for w in (rng.random(limb.size) * 1.2, (rng.random(limb.size) * 1.2).round(1)):
            for extra in ({}, {"rel": 0.9, "floor": 0.7}):
                got = {}
                for kernels in (True, False):
                    monkeypatch.setattr(_assembly, "USE_KERNELS", kernels)
                    got[kernels] = _assembly.match_limbs(limb, ia, ib, w, 6, 12, **extra)
                np.testing.assert_array_equal(got[True], got[False])
        comp = _assembly._components(limb * 12 + ia, limb * 12 + ib + 72, 144)
        sizes += np.bincount(comp)[np.unique(comp)].tolist()
    assert sum(1 < s <= 40 for s in sizes) > 50     # many components were matched exactly
    assert max(sizes) > 40                          # and some by the greedy


def test_paper_matching_kernel_equals_numpy(monkeypatch):
    """The authors' per-limb choice (``_grouping.match_per_limb``) compiled and in NumPy:
    the same rows in the same order, with and without tied keys."""
    rng = np.random.default_rng(6)
    for q in (1, 30, 200, 800):
        limb = np.sort(rng.integers(0, 6, q))
        ia, ib = rng.integers(0, 12, q), rng.integers(0, 12, q)
        for key in (rng.random(q), rng.random(q).round(1)):
            got = {}
            for kernels in (True, False):
                monkeypatch.setattr(_grouping, "USE_KERNELS", kernels)
                got[kernels] = _grouping.match_per_limb(limb, ia, ib, key, 6, 12)
            np.testing.assert_array_equal(got[True], got[False])
            assert got[True].size > 0


def test_kernels_agree_with_numpy_on_random_maps_and_strides(monkeypatch):
    """Fuzz: small random maps (skewed towards low values, some negative), any stride,
    both groupings, with and without a pair cap. Maps one cell high or wide are left
    out: every column (row) of their upsampled map is one value, a plateau whose ties
    the two summation orders break differently (docs/grouping.md)."""
    rng = np.random.default_rng(0)
    for _ in range(150):
        h, w = (int(v) for v in rng.integers(2, 24, 2))
        stride = int(rng.choice([1, 2, 3, 4, 5, 8]))
        maps = (rng.random((h, w, 50), dtype=np.float32) ** rng.uniform(1, 8)
                * rng.uniform(0.2, 1.5) - rng.uniform(0, 0.1)).astype(np.float32)
        codec = BodyPartsCodec(grouping=str(rng.choice(["paper", "matched"])), stride=stride,
                               max_limb_pairs=int(rng.choice([0, 30_000, 50])))
        got = {}
        for kernels in (True, False):
            for module in (_peaks, _grouping, _assembly):
                monkeypatch.setattr(module, "USE_KERNELS", kernels)
            got[kernels] = codec.decode(maps)
        assert got[True].keypoints.shape == got[False].keypoints.shape
        np.testing.assert_allclose(got[True].keypoints, got[False].keypoints, atol=1e-4)


def test_limb_kernel_on_noise_reads_upsampled_rows_like_numpy(monkeypatch):
    """With 20 000+ pairs the kernel reads x-upsampled rows (4 taps a sample); NumPy
    reads its full upsampling: the same passing pairs, totals equal to float32."""
    maps = _maps("noise", seed=4)
    k0 = COCO.keypoint_start
    types, xy, scores = _peaks.find_peaks(maps[:, :, k0:k0 + COCO.num_internal], 4, 0.1, 2, 48)
    counts = np.bincount(types, minlength=COCO.num_internal)
    fr, to = np.asarray(COCO.limb_from), np.asarray(COCO.limb_to)
    assert int((counts[fr] * counts[to]).sum()) > _grouping.ROWS_MIN_PAIRS
    sampler = _peaks.CubicSampler(maps, 4)
    out = {}
    for kernels in (True, False):
        monkeypatch.setattr(_grouping, "USE_KERNELS", kernels)
        out[kernels] = _grouping.limb_pairs(sampler, types, xy, scores, COCO, CODEC.config, 512.0)
    for got, want in zip(out[True], out[False]):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


def test_compiled_assembly_equals_the_python_one():
    """The authors' assembly compiled and run as Python: the same persons, on random
    connections dense enough for merges, conflicts and replaced slots."""
    rng = np.random.default_rng(2)
    fr = np.asarray(COCO.limb_from, np.int64)
    to = np.asarray(COCO.limb_to, np.int64)
    for _ in range(30):
        per_type = 6
        cand = rng.random(COCO.num_internal * per_type)
        sizes = rng.integers(0, 8, fr.size)
        ida = np.concatenate([fr[k] * per_type + rng.integers(0, per_type, n) for k, n in enumerate(sizes)])
        idb = np.concatenate([to[k] * per_type + rng.integers(0, per_type, n) for k, n in enumerate(sizes)])
        sc, length = rng.random(ida.size), rng.uniform(5, 80, ida.size)
        ptr = np.r_[0, np.cumsum(sizes)].astype(np.int64)
        special = rng.random(fr.size) < 0.1
        for fix_tb in (False, True):
            args = (ida, idb, sc, length, ptr, special, fr, to, cand, COCO.num_internal, 2.0, 0.7, fix_tb)
            got = _kernels.assemble(*args, compiled=True)
            want = _kernels.assemble(*args, compiled=False)
            for g, w in zip(got, want):
                np.testing.assert_array_equal(g, w)


def test_small_kernels_equal_their_numpy_twins(monkeypatch):
    rng = np.random.default_rng(3)
    for _ in range(20):
        n = int(rng.integers(1, 300))
        ka, kb = rng.integers(0, 15, n), rng.integers(0, 15, n) + 15
        monkeypatch.setattr(_grouping, "USE_KERNELS", False)
        rounds = _grouping._greedy_matching(ka, kb, 30)
        monkeypatch.setattr(_grouping, "USE_KERNELS", True)
        np.testing.assert_array_equal(_grouping._greedy_matching(ka, kb, 30), rounds)
        np.testing.assert_array_equal(_kernels.components(ka, kb, 30),   # component labels
                                      _assembly._components(ka, kb, 30))
        w = rng.random(n).round(1)      # many ties
        np.testing.assert_array_equal(_grouping.order_desc(w), np.argsort(-w, kind="stable"))
        w = rng.random(n)               # none
        np.testing.assert_array_equal(_grouping.order_desc(w), np.argsort(-w, kind="stable"))


def test_a_broken_numba_is_one_clear_error(monkeypatch):
    import builtins
    import os
    import subprocess
    import sys

    real_import = builtins.__import__

    def broken(name, *args, **kwargs):
        if name == "numba":
            raise ImportError("numba built for another NumPy")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", broken)
    _kernels._compiled.cache_clear()
    try:
        with pytest.raises(RuntimeError, match="KERAS_POSE_NO_NUMBA=1"):
            _kernels.limb_test()
    finally:
        monkeypatch.setattr(builtins, "__import__", real_import)
        _kernels._compiled.cache_clear()
    # ... and the switch keeps the NumPy paths
    code = ("from keras_pose.codecs import _kernels, _peaks, _grouping, _assembly; print("
            "_kernels.AVAILABLE, _peaks.USE_KERNELS, _grouping.USE_KERNELS, _assembly.USE_KERNELS)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "KERAS_POSE_NO_NUMBA": "1"})
    assert out.stdout.split() == ["False"] * 4, out.stderr[-500:]
