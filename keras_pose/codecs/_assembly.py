"""keras_pose's person assembly (``grouping="matched"``, ``docs/grouping.md``).

Shapes: N keypoint candidates, L limbs, Q passing pairs, J map points, P persons.

The authors' decoder (Li et al., "Simple Pose", AAAI 2020; ``docs/method_bottom_up.md``
§5.4-5.5) chooses each limb's connections greedily by key and assembles persons
sequentially. In crowds two persons' joints of one type often lie close
together and both reach the same partner joint: the greedy gives it to one and
leaves the other person's own limb unconnected (a missing joint, or a limb
taken by the neighbour). Here:

1. ``match_limbs``: each limb's connections are a maximum-weight one-to-one
   matching on the key, computed exactly (``_kernels.match_components``) per connected
   component of the pair graph, among the confident pairs (key >=
   ``MIN_MATCH_KEY``, within ``RELATIVE_STRENGTH`` of the best pair at both
   ends); the rest are added greedily afterwards;
2. the authors' sequential assembly on those connections, with the tB-slot
   quirk fixed (a person found through its tB slot also takes idA);
3. ``_merge_fragments``: persons with no keypoint type in common that accepted
   connections link are joined, strongest summed link first (split persons);
4. the authors' final filter and person score.

Imports without TensorFlow.
"""
from __future__ import annotations

import numpy as np

from keras_pose.codecs import _grouping, _kernels

# The matching compiled (``_kernels.match_limbs``) where numba is installed, else
# NumPy and Python (``_match_keys``).
USE_KERNELS = _kernels.AVAILABLE

# Above this many passing pairs in an image (clean crowds of 24 have ~1800;
# noise maps ~66 000) the limbs are matched by the greedy instead of exactly:
# the graph is one giant component and its exact matching would cost seconds.
GREEDY_ABOVE = 6000
# Pairs weaker than this fraction of the strongest pair at either end stay out
# of the exact matching (they are added greedily afterwards). On a network's
# blurred maps two mediocre wrong pairs can outweigh one good pair; the exact
# matching must only arbitrate between near-equal candidates (docs/grouping.md).
RELATIVE_STRENGTH = 0.9
# Matching objective (see ``match_limbs``): each pair is worth CARDINALITY_BONUS
# + GREEDY_BONUS * (chosen by the greedy) + key: more pairs win over any keys
# (key <= ~1.1); between choices with as many pairs, totals within a few
# hundredths are near-ties on clean maps, and the greedy's choice is kept.
CARDINALITY_BONUS = 8.0
GREEDY_BONUS = 0.02
# ... and pairs with a key below this (0.5 S + 0.25 score_a + 0.25 score_b; about
# 1 for a clean limb) too: on weak evidence the greedy is the safer rule (measured
# on the quickstart model's maps, docs/grouping.md).
MIN_MATCH_KEY = 0.7


def match_limbs(limb, ia, ib, w, num_limbs: int, num_candidates: int, exact_max: int = 40,
                rel: float = 0.0, floor: float = -np.inf) -> np.ndarray:
    """One-to-one pairs per limb of maximum total weight: accepted row indices.

    The passing pairs of all limbs form one bipartite graph on (limb, candidate)
    keys; its connected components are matched independently. A component that
    is a single pair is taken; larger ones get an exact maximum-weight matching
    (``_kernels.match_components``) up to ``exact_max`` pairs; beyond that, or with more than
    ``GREEDY_ABOVE`` pairs in all (noise), the greedy by weight (the authors'
    rule, §5.4). With ``rel``/``floor`` only the confident pairs are matched
    exactly and the rest added greedily. Crowd case: a and a' are two persons' joints
    of one type lying close together and b is a joint both could reach; the
    greedy gives b to the higher score and leaves a's own partner unmatched, the
    matching keeps both persons' limbs.
    """
    ka = limb * num_candidates + ia
    kb = limb * num_candidates + ib + num_limbs * num_candidates
    if ka.size > GREEDY_ABOVE:   # noise: one giant component, the greedy by weight
        o = _grouping.order_desc(w)
        return o[_grouping._greedy_matching(ka[o], kb[o], 2 * num_limbs * num_candidates)]
    if USE_KERNELS:
        return _kernels.match_limbs(limb, ia, ib, np.asarray(w, np.float64), num_limbs,
                                    num_candidates, exact_max, float(rel), float(floor),
                                    CARDINALITY_BONUS, GREEDY_BONUS)
    # Number the keys that occur densely (same order): the per-key tables below
    # then hold ~2Q entries instead of 2 L N. Those would be fresh memory on
    # every call, and a page fault costs microseconds on a VM (docs/benchmarks.md).
    _, dense = np.unique(np.concatenate([ka, kb]), return_inverse=True)
    return _match_keys(dense[:ka.size], dense[ka.size:], w, int(dense.max()) + 1, exact_max,
                       rel, floor)


def _match_keys(ka, kb, w, num_keys: int, exact_max: int, rel: float, floor: float) -> np.ndarray:
    """``match_limbs`` on pairs given as keys ka[q] - kb[q] (both < num_keys, the two
    sides' keys distinct), in NumPy and Python (``_kernels.match_limbs`` compiles the
    same steps into one call)."""
    if rel > 0 or floor > -np.inf:
        # A pair takes part in the exact matching only if it is within ``rel`` of
        # the strongest pair at both its ends and >= ``floor``; the rest join
        # greedily afterwards.
        best = np.zeros(num_keys)
        np.maximum.at(best, ka, w)
        np.maximum.at(best, kb, w)
        strong = (w >= rel * best[ka]) & (w >= rel * best[kb]) & (w >= floor)
        if not strong.all():
            sq = np.flatnonzero(strong)
            rows = sq[_match_keys(ka[sq], kb[sq], w[sq], num_keys, exact_max, 0.0, -np.inf)]
            used_a = np.zeros(num_keys, bool)
            used_b = np.zeros(num_keys, bool)
            used_a[ka[rows]] = True
            used_b[kb[rows]] = True
            rest = np.flatnonzero(~strong & ~used_a[ka] & ~used_b[kb])
            o = rest[_grouping.order_desc(w[rest])]
            more = o[_grouping._greedy_matching(ka[o], kb[o], num_keys)]
            return np.concatenate([rows, more])
    comp = _components(ka, kb, num_keys)
    order = np.argsort(comp, kind="stable")
    cs = comp[order]
    starts = np.flatnonzero(np.r_[True, cs[1:] != cs[:-1]])
    sizes = np.diff(np.r_[starts, cs.size])
    out = [order[starts[sizes == 1]]]
    # Objective: most pairs first (the matching steps in where it connects joints
    # the greedy leaves unconnected: an augmenting path), then total key with a
    # small bonus for the greedy's pairs: where both choices connect every joint
    # (two persons' limbs crossing, "parallel" vs "crossed" pairs, totals within
    # 0.002-0.012 on clean maps) the greedy's strongest-first choice was right
    # more often (measured on the synthetic val set, docs/grouping.md).
    o = _grouping.order_desc(w)
    greedy = np.zeros(w.size)
    greedy[o[_grouping._greedy_matching(ka[o], kb[o], num_keys)]] = 1.0
    score = CARDINALITY_BONUS + GREEDY_BONUS * greedy + w
    small = (sizes > 1) & (sizes <= exact_max)
    out.append(_kernels.match_components(order, starts[small], sizes[small], ka, kb, score,
                                         num_keys))
    big = [order[lo:lo + size] for lo, size in zip(starts[sizes > exact_max].tolist(),
                                                   sizes[sizes > exact_max].tolist())]
    if big:
        grp = np.concatenate(big)
        o = grp[_grouping.order_desc(w[grp])]
        out.append(o[_grouping._greedy_matching(ka[o], kb[o], num_keys)])
    return np.concatenate(out)


def _components(ka, kb, num_keys: int) -> np.ndarray:
    """(Q,) component label of each pair of the graph with edges ka[q] - kb[q] on
    nodes 0..num_keys-1, labelled by its smallest node (min-label propagation with
    pointer jumping: a few vector passes; ``_kernels.components`` finds the same
    labels by union-find)."""
    lab = np.arange(num_keys)
    while True:
        e = np.minimum(lab[ka], lab[kb])
        new = lab.copy()
        np.minimum.at(new, ka, e)
        np.minimum.at(new, kb, e)
        while True:                      # pointer jumping
            nxt = new[new]
            if np.array_equal(nxt, new):
                break
            new = nxt
        if np.array_equal(new, lab):
            return lab[ka]
        lab = new


def assemble_matched(sampler, types, xy, scores, spec, cfg, image_height) -> tuple:
    """Candidates -> persons (ids (P, J) int64, -1 empty; total (P,)), like
    ``_grouping.final_filter``."""
    num_limbs = spec.num_limbs
    limb, ia, ib, score, length, key, special = _grouping.limb_pairs(
        sampler, types, xy, scores, spec, cfg, image_height)
    if limb.size == 0:
        return np.zeros((0, spec.num_internal), np.int64), np.zeros(0)
    rows = match_limbs(limb, ia, ib, key, num_limbs, len(types), rel=RELATIVE_STRENGTH,
                       floor=MIN_MATCH_KEY)
    rows = rows[np.lexsort((-key[rows], limb[rows]))]   # limb-major, key-descending
    ia, ib, score = ia[rows], ib[rows], score[rows]
    state = _grouping.assemble_rows(ia, ib, score, length[rows],
                                    np.searchsorted(limb[rows], np.arange(num_limbs + 1)),
                                    special, scores, spec, cfg, fix_tb=True)
    _merge_fragments(state, ia, ib, score, len(types))
    return _grouping.final_filter(state, cfg)


def _merge_fragments(state, ia, ib, s, n) -> None:
    """Join persons with no keypoint type in common that accepted limbs link,
    strongest summed link first (in place on the assembly's arrays, see
    ``_grouping.assemble``: the absorbed person gets parts = 0).

    The links between two live persons without a common type are found and summed
    in NumPy (sums in row order); only the merges themselves, a few per image,
    run one by one."""
    ids, attach, total, parts, longest = state
    filled = ids >= 0
    owner = np.full(n, -1, np.int64)
    p_idx, t_idx = np.nonzero(filled & (parts > 0)[:, None])
    owner[ids[p_idx, t_idx]] = p_idx
    pa, pb = owner[ia], owner[ib]
    ok = (pa >= 0) & (pb >= 0) & (pa != pb)
    ok[ok] = ~(filled[pa[ok]] & filled[pb[ok]]).any(axis=1)
    if not ok.any():
        return
    lo, hi, w = np.minimum(pa, pb)[ok], np.maximum(pa, pb)[ok], s[ok]
    _, first, inv = np.unique(lo * ids.shape[0] + hi, return_index=True, return_inverse=True)
    summed = np.bincount(inv, weights=w)
    best = np.zeros(first.size)
    np.maximum.at(best, inv, w)
    alias = {}

    def live(p):
        while p in alias:
            p = alias[p]
        return p

    # strongest summed link first; equal sums in the order the links first occur
    for u in np.lexsort((first, -summed)).tolist():
        a, b = live(int(lo[first[u]])), live(int(hi[first[u]]))
        if a == b or (filled[a] & filled[b]).any():
            continue
        j1, j2 = min(a, b), max(a, b)
        ids[j1, filled[j2]] = ids[j2, filled[j2]]
        attach[j1, filled[j2]] = attach[j2, filled[j2]]
        filled[j1] |= filled[j2]
        parts[j1] += parts[j2]
        total[j1] += total[j2] + best[u]
        longest[j1] = max(longest[j1], longest[j2])
        parts[j2] = 0
        alias[j2] = j1
