"""The crowd scene builder and the grouping error breakdown (tests/_crowd_scenes.py)."""
import numpy as np

import _crowd_scenes as cs
from test_grouping_matched import _person


def _two():
    a, b = _person(150.0), _person(330.0)
    return np.stack([a, b])


def test_breakdown_of_a_perfect_decode_is_clean():
    gt = _two()
    b = cs.breakdown(gt, gt.copy())
    assert b == {"persons": 2, "decoded": 2, "merged": 0, "split": 0, "stolen": 0, "missing": 0,
                 "no_peak": 0, "missed_persons": 0, "spurious": 0}


def test_breakdown_counts_a_merge_and_a_split():
    gt = _two()
    merged = gt[0].copy()
    merged[9:] = gt[1, 9:]                       # A's upper body + B's lower body
    b = cs.breakdown(gt, merged[None])
    assert (b["merged"], b["stolen"], b["missed_persons"]) == (1, 8, 1)
    assert b["missing"] == 8 + 17                # A's lower body, all of B
    upper, lower = gt[0].copy(), gt[0].copy()
    upper[9:] = 0
    lower[:9] = 0
    b = cs.breakdown(gt, np.stack([upper, lower, gt[1]]))
    assert (b["split"], b["merged"], b["stolen"], b["missing"]) == (1, 0, 0, 8)


def test_compose_crowd_is_crowded_and_inside_the_frame():
    pool = cs.synthetic_pool(num_scenes=6)
    rng = np.random.default_rng(0)
    scenes = [cs.compose_crowd(rng, pool) for _ in range(4)]
    for kp in scenes:
        assert 6 <= len(kp) <= 10
        lab = kp[..., 2] > 0
        assert (kp[..., 0][lab] >= 0).all() and (kp[..., 0][lab] <= 639).all()
        assert (kp[..., 1][lab] >= 0).all() and (kp[..., 1][lab] <= 639).all()
    assert np.median(np.concatenate([cs.overlap_counts(k) for k in scenes])) >= 4
    ds = cs.coco_dataset(scenes)
    assert len(ds["annotations"]) == sum(len(k) for k in scenes)
