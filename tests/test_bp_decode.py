"""BodyPartsCodec decoding (docs/method_bottom_up.md §5.2-5.6): exactness against a literal
full-resolution reference, alignment, flip fusion, grouping quirks, bad input."""
import numpy as np
import pytest
import cv2

from _reference_decoder import jittered_scene, reference_decode, stick_figures
from keras_pose.codecs import BodyPartsCodec
from keras_pose.codecs import _grouping, _peaks
from keras_pose.skeleton import COCO

CODEC = BodyPartsCodec(grouping="paper")   # the authors' assembly: parity with the reference


def _scene(seed, persons, size=(512, 512)):
    rng = np.random.default_rng(seed)
    kp = jittered_scene(rng, stick_figures(rng), persons, size=size)
    return kp, CODEC.encode(kp, size)["heatmaps"]


def _match_error(kp_a, kp_b):
    """Same persons (in order) and keypoints: max |dxy| over found keypoints."""
    assert kp_a.shape == kp_b.shape
    assert np.array_equal(kp_a[..., 2] > 0, kp_b[..., 2] > 0)
    found = kp_a[..., 2] > 0
    return float(np.abs(kp_a[..., :2] - kp_b[..., :2])[found].max(initial=0.0))


# ----------------------------------------------------------------- interpolation
@pytest.mark.parametrize("stride", [4, 8, 3])  # 3: the NumPy tap-table path only
def test_sampler_is_cv2_bicubic_upsampling(stride):
    rng = np.random.default_rng(0)
    h, w = 12, 15
    maps = rng.random((h, w, 3)).astype(np.float32)
    full = cv2.resize(maps, (w * stride, h * stride), interpolation=cv2.INTER_CUBIC)
    sampler = _peaks.CubicSampler(maps, stride)
    ys, xs = np.mgrid[0:h * stride, 0:w * stride]
    for n in (xs.size, 500):  # many samples: stacked cv2.remap; few: tap tables
        pick = rng.choice(xs.size, n, replace=False)
        ch = rng.integers(0, 3, n)       # mixed, unsorted channels
        got = sampler.sample(ch, xs.ravel()[pick], ys.ravel()[pick])
        np.testing.assert_allclose(got, full.reshape(-1, 3)[pick, ch], atol=1e-5)
    # the patch operator is the same interpolation around a seed cell
    offsets, cells, u = _peaks.patch_operator(stride, 2)
    r, q = 3, 4
    block = maps[np.clip(r + cells, 0, h - 1)][:, np.clip(q + cells, 0, w - 1), 0]
    patch = u @ block @ u.T
    py, px = r * stride + offsets, q * stride + offsets
    ok_y, ok_x = (py >= 0) & (py < h * stride), (px >= 0) & (px < w * stride)
    np.testing.assert_allclose(patch[ok_y][:, ok_x], full[py[ok_y]][:, px[ok_x], 0], atol=1e-5)


def test_peaks_equal_full_resolution_nms():
    """Peaks from seed patches == 3x3 NMS + refinement on the full upsampled map."""
    rng = np.random.default_rng(1)
    h = w = 32
    yy, xx = np.mgrid[0:h, 0:w]
    maps = np.zeros((h, w, 4), np.float32)
    for t in range(4):
        for _ in range(6):  # blobs of several widths and heights, some near borders
            cy, cx, sg, amp = rng.uniform(-1, h), rng.uniform(-1, w), rng.uniform(1.2, 3), rng.uniform(0.15, 1)
            maps[:, :, t] = np.maximum(maps[:, :, t], amp * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * sg * sg)))
    types, xy, scores = _peaks.find_peaks(maps, 4, 0.1, 2, 1000)
    full = cv2.resize(maps, (w * 4, h * 4), interpolation=cv2.INTER_CUBIC)
    ref = []
    for t in range(4):
        f = full[:, :, t]
        pad = np.pad(f, 1, mode="reflect")
        pooled = np.max([pad[i:i + 4 * h, j:j + 4 * w] for i in range(3) for j in range(3)], axis=0)
        for y, x in zip(*np.nonzero((f == pooled) & (f >= 0.1))):
            if 2 <= x < 4 * w - 2 and 2 <= y < 4 * h - 2:
                win = f[y - 2:y + 3, x - 2:x + 3].astype(np.float64)
                dy, dx = np.mgrid[-2:3, -2:3]
                ref.append((t, x + (win * dx).sum() / win.sum(), y + (win * dy).sum() / win.sum(), win.mean()))
            else:
                ref.append((t, x, y, f[y, x]))
    ref = np.asarray(ref)
    assert len(ref) > 10
    assert types.tolist() == ref[:, 0].astype(int).tolist()
    np.testing.assert_allclose(xy, ref[:, 1:3], atol=1e-4)
    np.testing.assert_allclose(scores, ref[:, 3], atol=1e-5)


def test_fractional_keypoint_decodes_within_one_pixel():
    """Alignment: a Gaussian rendered at a fractional position (X = 4q + 1.5 grid) comes back < 1 px."""
    rng = np.random.default_rng(2)
    worst = 0.0
    for _ in range(20):
        kp = np.zeros((1, 17, 3), np.float32)
        x, y = rng.uniform(20, 236, 2)
        kp[0, 9] = (x, y, 2)                       # left wrist alone: no limb
        maps = CODEC.encode(kp, (256, 256))["heatmaps"]
        k0 = COCO.keypoint_start
        types, xy, _ = _peaks.find_peaks(np.ascontiguousarray(maps[:, :, k0:k0 + 18]), 4, 0.1, 2, 48)
        assert len(types) == 1 and types[0] == COCO.internal_to_coco.index(9)
        worst = max(worst, float(np.hypot(*(xy[0] - (x, y)))))
        # ... and no person is made from a single keypoint
        assert len(CODEC.decode(maps)) == 0
    assert worst < 1.0, worst
    # a two-keypoint person (left shoulder -> left elbow) decodes at the right place
    kp = np.zeros((1, 17, 3), np.float32)
    kp[0, 5], kp[0, 7] = (100.3, 80.7, 2), (131.6, 142.2, 2)
    poses = CODEC.decode(CODEC.encode(kp, (256, 256))["heatmaps"])
    assert len(poses) == 1
    assert np.array_equal(poses.keypoints[0, :, 2] > 0, kp[0, :, 2] > 0)
    assert np.abs(poses.keypoints[0, [5, 7], :2] - kp[0, [5, 7], :2]).max() < 1.0
    assert 0 < poses.scores[0] < 1


# ----------------------------------------------------------------- parity
@pytest.mark.parametrize("seed,persons", [(3, 1), (4, 6), (5, 10)])
def test_matches_literal_full_resolution_reference(seed, persons):
    _, maps = _scene(seed, persons)
    fast = CODEC.decode(maps)
    ref_kp, ref_scores = reference_decode(maps, CODEC.config)
    assert len(fast) == len(ref_kp) >= max(1, persons - 2)
    assert _match_error(fast.keypoints, ref_kp) < 1e-3
    np.testing.assert_allclose(fast.keypoints[..., 2], ref_kp[..., 2], atol=1e-5)
    np.testing.assert_allclose(fast.scores, ref_scores, atol=1e-5)


@pytest.mark.slow
def test_matches_reference_in_a_24_person_crowd():
    """Same-type blobs overlap here (max-combined, creased): the near-top seeds matter."""
    rng = np.random.default_rng(11)
    kp = jittered_scene(rng, stick_figures(rng), 24, height_range=(120, 260))
    maps = CODEC.encode(kp, (512, 512))["heatmaps"]
    fast = CODEC.decode(maps)
    ref_kp, ref_scores = reference_decode(maps, CODEC.config)
    assert len(fast) == len(ref_kp) >= 18
    assert _match_error(fast.keypoints, ref_kp) < 1e-3
    np.testing.assert_allclose(fast.scores, ref_scores, atol=1e-5)


def _agreement(kp_a, kp_b):
    """Fraction of the found keypoints of kp_a's persons reproduced (same place, 1 px) by
    the best-matching person of kp_b."""
    hit = total = 0
    for person in kp_a:
        found = person[:, 2] > 0
        total += found.sum()
        if len(kp_b):
            close = np.abs(kp_b[:, :, :2] - person[None, :, :2]).max(-1) < 1.0
            hit += (close & (kp_b[:, :, 2] > 0) & found[None]).sum(1).max()
    return hit / max(total, 1)


def test_matches_reference_on_perturbed_maps():
    """Network-like maps (blurred, scaled, noisy). Everything we find, the reference
    finds too; it also finds a few weak ringing maxima on blob flanks that our seeds
    skip (documented in _peaks), so >= 90% of its keypoints are reproduced."""
    _, maps = _scene(6, 6)
    rng = np.random.default_rng(6)
    noisy = 0.9 * cv2.GaussianBlur(maps, (3, 3), 0.8) + rng.normal(0, 0.02, maps.shape).astype(np.float32)
    fast = CODEC.decode(noisy)
    ref_kp, _ = reference_decode(noisy, CODEC.config)
    assert len(fast) >= 5
    assert _agreement(fast.keypoints, ref_kp) == 1.0
    assert _agreement(ref_kp, fast.keypoints) >= 0.9


# ----------------------------------------------------------------- flip
def _mirror(kp, width):
    out = kp[:, COCO.flip_perm].copy()
    out[:, :, 0] = np.where(out[:, :, 2] > 0, width - 1 - out[:, :, 0], 0)
    return out


def test_flip_fusion_of_symmetric_scene():
    """A scene plus its mirror (left/right swapped) is flip-symmetric by construction:
    the network's maps for the mirrored image are the same maps. Fusing them with
    the mirror decodes to the same persons as the unflipped maps."""
    size = (256, 320)
    rng = np.random.default_rng(7)
    kp = jittered_scene(rng, stick_figures(rng), 3, size=size, height_range=(90, 140))
    kp[:, :, 0] = np.where(kp[:, :, 2] > 0, kp[:, :, 0] * 0.45 + 2, 0)   # left half
    scene = np.concatenate([kp, _mirror(kp, size[1])])
    maps = CODEC.encode(scene, size)["heatmaps"]
    maps_of_mirrored_image = CODEC.encode(_mirror(scene, size[1]), size)["heatmaps"]
    fused = CODEC.fuse_flip(maps, maps_of_mirrored_image)
    # equal up to the encoder's round-half-to-even window edges (values ~0.01)
    assert np.abs(fused - maps)[..., COCO.keypoint_start:].max() < 0.02
    a, b = CODEC.decode(fused), CODEC.decode(maps)
    assert len(a) == len(b) == 6
    assert _agreement(a.keypoints, b.keypoints) == _agreement(b.keypoints, a.keypoints) == 1.0


def test_flip_fusion_of_any_scene():
    """The mirrored image's maps, flipped back and permuted, give the same keypoints
    (the encoder's limb boxes round differently in the mirror, so where persons
    overlap a keypoint may be grouped with a different neighbour)."""
    rng = np.random.default_rng(9)
    kp = jittered_scene(rng, stick_figures(rng), 5, size=(256, 320), height_range=(90, 160))
    maps = CODEC.encode(kp, (256, 320))["heatmaps"]
    mirrored = CODEC.encode(_mirror(kp, 320), (256, 320))["heatmaps"]
    a, b = CODEC.decode(CODEC.fuse_flip(maps, mirrored)), CODEC.decode(maps)
    assert len(a) == len(b) >= 4
    for t in range(17):
        pa = a.keypoints[a.keypoints[:, t, 2] > 0, t, :2]
        pb = b.keypoints[b.keypoints[:, t, 2] > 0, t, :2]
        assert len(pa) == len(pb)
        if len(pa):
            assert np.abs(pa[:, None] - pb[None]).max(-1).min(1).max() < 1.0


def test_fuse_flip_permutes_left_and_right():
    maps = np.zeros((8, 10, 50), np.float32)
    mirrored = np.zeros_like(maps)
    ls = COCO.keypoint_start + COCO.internal_names.index("left_shoulder")
    rs = COCO.keypoint_start + COCO.internal_names.index("right_shoulder")
    mirrored[2, 1, rs] = 1.0   # the mirrored image's right shoulder at column 1
    fused = CODEC.fuse_flip(maps, mirrored)
    assert fused[2, 8, ls] == 0.5 and fused[..., rs].max() == 0
    with pytest.raises(ValueError, match="differ in shape"):
        CODEC.fuse_flip(maps, mirrored[:, :-1])


# ----------------------------------------------------------------- grouping quirks
class _Cfg:
    length_rate, connection_tolerance, min_parts, min_mean_score = 16.0, 0.7, 2, 0.45


def _conns(rows_by_limb):
    conns = [np.zeros((0, 4))] * COCO.num_limbs
    for k, rows in rows_by_limb.items():
        conns[k] = np.asarray(rows, np.float64)
    return conns, np.zeros(COCO.num_limbs, bool)


def test_grouping_tb_only_match_does_not_add_a():
    # limb 9 neck(1)->Rsho(2) makes person {neck 0, Rsho 1}; limb 21 nose(0)->Rsho(2)
    # then matches that person only through its Rsho slot: the nose is NOT added.
    scores = np.array([0.9, 0.8, 0.7])  # ids: 0 neck, 1 Rsho, 2 nose
    conns, special = _conns({9: [[0, 1, 0.9, 40.0]], 21: [[2, 1, 0.8, 50.0]]})
    people = _grouping.assemble(conns, special, scores, COCO, _Cfg)
    assert len(people) == 1
    ids, total = people[0]
    assert ids[1] == 0 and ids[2] == 1 and ids[0] == -1
    # the Rsho slot is refreshed only if the new attach score is higher: 0.8 < 0.9
    assert total == pytest.approx(0.9 + 0.8 + 0.9)


def test_grouping_merges_disjoint_and_ignores_conflicts():
    # person A: neck 0 - Rsho 1 (limb 9); person B: Rhip 2 - Rkne 3 (limb 16);
    # limb 23 Rsho->Rhip joins them (found == 2, disjoint) -> one person of 4 parts.
    scores = np.array([0.9, 0.9, 0.9, 0.9, 0.9])
    conns, special = _conns({9: [[0, 1, 0.9, 40.0]], 16: [[2, 3, 0.8, 40.0]],
                             23: [[1, 2, 0.7, 60.0]]})
    people = _grouping.assemble(conns, special, scores, COCO, _Cfg)
    assert len(people) == 1
    ids, total = people[0]
    assert [ids[t] for t in (1, 2, 8, 9)] == [0, 1, 2, 3]
    assert total == pytest.approx(0.9 * 4 + 0.9 + 0.8 + 0.7)
    # too weak a link (S < 0.7 * the smallest attach score) keeps them apart
    conns, special = _conns({9: [[0, 1, 0.9, 40.0]], 16: [[2, 3, 0.8, 40.0]],
                             23: [[1, 2, 0.5, 60.0]]})
    assert len(_grouping.assemble(conns, special, scores, COCO, _Cfg)) == 2
    # conflict: person 1 {neck 0, nose 2} (limb 0), person 2 {neck 3, Lsho 4}
    # (limb 12); limb 22 nose -> Lsho links them (found == 2) but both have a
    # neck: a no-op (remove_recon = 0), both persons stay as they were.
    scores = np.array([0.9, 0.9, 0.8, 0.9, 0.7])
    conns, special = _conns({0: [[0, 2, 0.9, 40.0]], 12: [[3, 4, 0.6, 40.0]],
                             22: [[2, 4, 0.95, 50.0]]})
    people = _grouping.assemble(conns, special, scores, COCO, _Cfg)
    assert len(people) == 2
    (ids1, total1), (ids2, total2) = people
    assert (ids1[1], ids1[0], ids1[5]) == (0, 2, -1) and (ids2[1], ids2[5], ids2[0]) == (3, 4, -1)
    assert total1 == pytest.approx(0.9 + 0.8 + 0.9) and total2 == pytest.approx(0.9 + 0.7 + 0.6)


def test_vectorised_greedy_matching_equals_sequential_scan():
    rng = np.random.default_rng(10)
    for _ in range(20):
        n = int(rng.integers(1, 400))
        ka, kb = rng.integers(0, 12, n), rng.integers(0, 12, n) + 12  # rows in key order
        used_a, used_b, expected = set(), set(), []
        for r, (a, b) in enumerate(zip(ka.tolist(), kb.tolist())):
            if a not in used_a and b not in used_b:
                used_a.add(a)
                used_b.add(b)
                expected.append(r)
        assert _grouping._greedy_matching(ka, kb, 24).tolist() == expected


def test_sample_rounds_cover_every_sample_once():
    for smax in (1, 2, 3, 7, 19, 20, 33):
        idx = np.concatenate(_grouping._stages(smax))
        assert sorted(idx.tolist()) == list(range(smax))


def test_min_limb_length_rejects_coincident_pairs():
    """A candidate pair closer than ``min_limb_length`` is no limb: a blurry model's
    stray wrist peak on the elbow would otherwise win on its few, strong samples."""
    maps = np.zeros((32, 32, COCO.num_channels), np.float32)
    maps[:, :, COCO.limb_start + 11] = 1.0        # limb 11: right elbow (3) -> right wrist (4)
    sampler = _peaks.CubicSampler(maps, 4)
    types = np.array([3, 4, 4])
    xy = np.array([[60.0, 60.0], [62.0, 62.0], [70.0, 76.0]])    # wrists 2.8 px and 18.9 px away
    scores = np.array([0.9, 0.9, 0.9])
    accepted = {}
    for min_len in (0.0, 4.0):
        cfg = CODEC.config.replace(min_limb_length=min_len)
        conns, _ = _grouping.score_limbs(sampler, types, xy, scores, COCO, cfg, 128.0)
        accepted[min_len] = conns[11][:, 1].astype(int).tolist()
    assert accepted == {0.0: [1], 4.0: [2]}


def test_grouping_final_filter():
    scores = np.array([0.1, 0.1])
    conns, special = _conns({9: [[0, 1, 0.2, 40.0]]})
    # total / parts = (0.1 + 0.1 + 0.2) / 2 = 0.2 < 0.45 -> dropped
    assert _grouping.assemble(conns, special, scores, COCO, _Cfg) == []
    class Loose(_Cfg):
        min_mean_score = 0.1
    assert len(_grouping.assemble(conns, special, scores, COCO, Loose)) == 1
    class Strict(Loose):
        min_parts = 3
    assert _grouping.assemble(conns, special, scores, COCO, Strict) == []


# ----------------------------------------------------------------- bad input
def test_bad_input():
    maps = np.zeros((16, 16, 50), np.float32)
    assert len(CODEC.decode(maps)) == 0
    assert CODEC.decode(maps).keypoints.shape == (0, 17, 3)
    bad = maps.copy()
    bad[3, 4, 31] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        CODEC.decode(bad)
    with pytest.raises(ValueError, match=r"\(h, w, C\)"):
        CODEC.decode(maps[None])
    with pytest.raises(ValueError, match="channels"):
        CODEC.decode(maps[:, :, :40])
    with pytest.raises(ValueError, match="numeric"):
        CODEC.decode([["a"]])
    with pytest.raises(ValueError, match="image_height"):
        CODEC.decode(maps, image_height=0)
    with pytest.raises(ValueError, match="image_height"):
        CODEC.decode(maps, image_height="tall")
    wide = np.zeros((16, 16, 51), np.float32)
    with pytest.raises(ValueError, match="channels"):
        CODEC.fuse_flip(wide, wide)


def test_candidates_beyond_the_cap_keep_the_strongest():
    h = w = 64
    yy, xx = np.mgrid[0:h, 0:w]
    maps = np.zeros((h, w, 18), np.float32)
    amps = np.linspace(0.3, 1.0, 10)
    for i, amp in enumerate(amps):  # ten separate blobs per type, distinct heights
        cy, cx = 8 + 12 * (i // 5), 6 + 12 * (i % 5)
        maps[:, :, 3] += amp * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * 2.25 ** 2))
    types, xy, scores = _peaks.find_peaks(maps, 4, 0.1, 2, 3)
    assert types.tolist() == [3, 3, 3]
    full_types, full_xy, full_scores = _peaks.find_peaks(maps, 4, 0.1, 2, 48)
    assert len(full_types) == 10
    best = np.sort(np.argsort(-full_scores)[:3])   # kept in id (row-major) order
    np.testing.assert_allclose(xy, full_xy[best])


def test_noise_is_capped_and_bounded():
    rng = np.random.default_rng(8)
    noise = rng.random((64, 64, 50)).astype(np.float32)
    k0 = COCO.keypoint_start
    types, _, _ = _peaks.find_peaks(np.ascontiguousarray(noise[:, :, k0:k0 + 18]), 4, 0.1, 2, 5)
    assert np.bincount(types, minlength=18).tolist() == [5] * 18
    codec = BodyPartsCodec(max_candidates=12)
    poses = codec.decode(noise)
    assert len(poses) <= 18 * 12 // 2
    assert np.isfinite(poses.keypoints).all() and np.isfinite(poses.scores).all()


def test_negative_lobes_keep_refined_peaks_inside_the_image():
    """Regression: a network map whose 5x5 window nearly cancels (negative lobes)
    threw the weighted centroid far off the image and crashed the limb reads."""
    from keras_pose.codecs import BodyPartsCodec

    codec = BodyPartsCodec()
    rng = np.random.default_rng(1)   # this seed crashed the unclipped centroid
    maps = rng.normal(0.0, 0.3, (16, 16, 50)).astype(np.float32)
    poses = codec.decode(maps)                      # must not raise
    found = poses.keypoints[..., 2] > 0
    xy = poses.keypoints[..., :2][found]
    assert np.all((xy >= 0) & (xy <= 63))


def test_best_per_type_is_the_stable_k_smallest():
    rng = np.random.default_rng(0)
    for _ in range(100):
        types = rng.integers(0, 5, 300)
        key = rng.integers(0, 20, 300).astype(float)   # many ties
        k = int(rng.integers(1, 70))
        got = _peaks._best_per_type(types, key, np.bincount(types, minlength=5), k)
        want = []
        for t in range(5):
            idx = np.flatnonzero(types == t)
            want += sorted(idx[np.argsort(key[idx], kind="stable")[:k]].tolist())
        assert got.tolist() == want
