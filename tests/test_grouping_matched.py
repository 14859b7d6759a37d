"""keras_pose's "matched" person assembly (docs/grouping.md): maximum-weight limb matching,
merging of split fragments, crowds, other keypoint specs, and the authors' assembly kept."""
import numpy as np
import pytest

import _crowd_scenes as cs
from keras_pose.codecs import BodyPartsCodec
from keras_pose.codecs import _assembly
from keras_pose.skeleton import COCO, load_spec

PAPER = BodyPartsCodec(grouping="paper")
MATCHED = BodyPartsCodec(grouping="matched")


def _limb(name_a, name_b, spec=COCO):
    a, b = spec.internal_names.index(name_a), spec.internal_names.index(name_b)
    return spec.limbs.index((a, b))


def _person(x0=200.0, y0=120.0, s=1.0):
    """One upright COCO person (17, 3), about 260 px tall at s = 1."""
    xy = np.array([[0, -80], [-6, -86], [6, -86], [-14, -82], [14, -82], [-26, -55], [26, -55],
                   [-34, -20], [34, -20], [-38, 12], [38, 12], [-16, 10], [16, 10],
                   [-18, 60], [18, 60], [-20, 110], [20, 110]], np.float32) * 1.4 * s
    out = np.zeros((17, 3), np.float32)
    out[:, :2] = xy + [x0, y0 + 120]
    out[:, 2] = 2
    return out


def test_matching_keeps_both_persons_limbs_where_greedy_takes_one():
    # Limb 0 of one type pair: a, a' are two persons' joints lying close together,
    # b is reachable from both, b' only from a. Greedy (by weight) takes (a, b)
    # and leaves a' and b' alone; the maximum-weight matching takes (a', b), (a, b').
    a, a2, b, b2 = 0, 1, 2, 3
    limb = np.zeros(3, np.int64)
    ia = np.array([a, a2, a])
    ib = np.array([b, b, b2])
    w = np.array([0.95, 0.90, 0.85])
    rows = _assembly.match_limbs(limb, ia, ib, w, num_limbs=1, num_candidates=4)
    assert sorted(zip(ia[rows].tolist(), ib[rows].tolist())) == [(a, b2), (a2, b)]


def _greedy(ia, ib, w):
    taken_a, taken_b, out = set(), set(), set()
    for q in sorted(range(len(w)), key=lambda q: -w[q]):
        if ia[q] not in taken_a and ib[q] not in taken_b:
            out.add(q)
            taken_a.add(ia[q])
            taken_b.add(ib[q])
    return out


def test_matching_agrees_with_brute_force_on_random_graphs():
    # The objective: most pairs, then the key total with a small bonus per pair
    # the greedy chose (docs/grouping.md).
    rng = np.random.default_rng(3)
    for _ in range(30):
        na, nb = rng.integers(1, 5, size=2)
        pairs = [(i, j) for i in range(na) for j in range(nb) if rng.random() < 0.6]
        if not pairs:
            continue
        ia = np.array([p[0] for p in pairs])
        ib = np.array([na + p[1] for p in pairs])
        w = rng.uniform(0.1, 1.0, len(pairs))
        greedy = _greedy(ia, ib, w)
        value = [_assembly.CARDINALITY_BONUS + _assembly.GREEDY_BONUS * (q in greedy) + w[q]
                 for q in range(len(pairs))]
        rows = _assembly.match_limbs(np.zeros(len(pairs), np.int64), ia, ib, w, 1, na + nb)
        assert len(set(ia[rows])) == len(rows) and len(set(ib[rows])) == len(rows)
        best = 0.0
        for mask in range(1 << len(pairs)):   # every subset that is a matching
            sel = [q for q in range(len(pairs)) if mask >> q & 1]
            if len({ia[q] for q in sel}) == len(sel) == len({ib[q] for q in sel}):
                best = max(best, sum(value[q] for q in sel))
        assert sum(value[q] for q in rows) == pytest.approx(best)


def test_split_person_is_merged_through_the_redundant_parts():
    # The tree limbs from the neck to the hips are blank and the redundant
    # shoulder-hip parts weak (0.5): the lower body is a separate fragment until
    # its weak links join it. The authors' assembly refuses the join (S < 0.7 x the
    # weakest attach score) and returns two persons; ours returns one with all joints.
    kp = _person()[None]
    maps = MATCHED.encode(kp, (512, 512))["heatmaps"].copy()
    for a, b in (("neck", "right_hip"), ("neck", "left_hip")):
        maps[:, :, _limb(a, b)] = 0.0
    for a, b in (("right_shoulder", "right_hip"), ("left_shoulder", "left_hip")):
        maps[:, :, _limb(a, b)] *= 0.5
    paper = PAPER.decode(maps)
    ours = MATCHED.decode(maps)
    assert len(paper) == 2
    assert len(ours) == 1
    assert (ours.keypoints[0, :, 2] > 0).all()
    assert np.abs(ours.keypoints[0, :, :2] - kp[0, :, :2]).max() < 2.0


def _each_person_whole(poses, kp) -> bool:
    """Two decoded persons, each made of one true person's joints, all 34 joints found."""
    if len(poses) != 2 or (poses.keypoints[..., 2] > 0).sum() != 34:
        return False
    for p in poses.keypoints:
        d = np.stack([np.abs(p[:, :2] - g[:, :2]).max(1) for g in kp])   # (2, 17)
        if len(set(d.argmin(0)[p[:, 2] > 0].tolist())) != 1:
            return False
    return True


def test_two_persons_competing_for_one_wrist():
    # Person B stands 20 px beside A, its right elbow 6 px from A's: A's and B's
    # wrists both pass the limb test from both elbows. The authors' per-limb greedy
    # gives one wrist to the wrong elbow; the matching keeps each with its person.
    a = _person(200.0)
    b = _person(200.0)
    b[:, 0] += 20.0
    b[8, :2] = a[8, :2] + [2.0, 6.0]      # right elbow (COCO index 8)
    kp = np.stack([a, b])
    maps = MATCHED.encode(kp, (512, 512))["heatmaps"]
    assert not _each_person_whole(PAPER.decode(maps), kp)
    assert _each_person_whole(MATCHED.decode(maps), kp)


@pytest.mark.parametrize("source", ["coco", "synthetic"])
def test_crowd_beats_the_authors_assembly(source, coco_sample_dir):
    pool = (cs.coco_pool(coco_sample_dir / "test_coco.json") if source == "coco"
            else cs.synthetic_pool(num_scenes=12))
    rng = np.random.default_rng(5)
    scenes = [cs.compose_crowd(rng, pool) for _ in range(3)]
    assert np.median(np.concatenate([cs.overlap_counts(k) for k in scenes])) >= 4
    ds = cs.coco_dataset(scenes)
    ap = {}
    for name, codec in (("paper", PAPER), ("matched", MATCHED)):
        res = []
        for i, kp in enumerate(scenes, 1):
            res += codec.decode(codec.encode(kp, (640, 640))["heatmaps"]).to_coco(i)
        ap[name] = cs.keypoint_ap(ds, res)
    print(f"\ncrowd AP on perfect maps ({source}): {ap}")
    assert ap["matched"] >= 0.9
    assert ap["matched"] > ap["paper"]


@pytest.mark.parametrize("name", ["crowdpose", "mpii"])
def test_matched_assembly_reads_the_keypoint_spec(name):
    from keras_pose.data.skeleton_poses import roundtrip_ap
    stats = roundtrip_ap(load_spec(name), num_images=3, grid=(3, 3), seed=1, grouping="matched")
    assert stats["AP"] >= 0.95


def test_grouping_is_a_config_field():
    assert BodyPartsCodec.from_config(MATCHED.get_config()).config.grouping == "matched"
    with pytest.raises(ValueError, match="grouping"):
        BodyPartsCodec(grouping="hungarian")
