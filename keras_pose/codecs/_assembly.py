"""keras_pose's person assembly ("global"): all limbs at once, strongest evidence first.

Shapes: N keypoint candidates, L limbs, Q passing pairs, J map points, P persons.
See ``docs/grouping.md`` for the design and measurements.

Imports without TensorFlow.
"""
from __future__ import annotations

import numpy as np

from keras_pose.codecs import _grouping


def _max_weight_scipy(limb, ia, ib, w, num_limbs):
    from scipy.optimize import linear_sum_assignment
    sel = []
    for kk in range(num_limbs):
        qs = np.flatnonzero(limb == kk)
        if not qs.size:
            continue
        ua, ra = np.unique(ia[qs], return_inverse=True)
        ub, rb = np.unique(ib[qs], return_inverse=True)
        W = np.zeros((ua.size, ub.size))
        Q = -np.ones((ua.size, ub.size), int)
        W[ra, rb] = w[qs]
        Q[ra, rb] = qs
        r, c = linear_sum_assignment(W, maximize=True)
        sel += [Q[i, j] for i, j in zip(r, c) if Q[i, j] >= 0]
    return np.asarray(sel, np.int64)


def _hungarian(cost, n, m):
    """Min-cost assignment of n rows to distinct columns of an n x m cost (n <= m,
    list of lists): the column of each row. Shortest augmenting paths with
    potentials (Kuhn-Munkres, O(n^2 m)); used on small components only."""
    inf = float("inf")
    u, v = [0.0] * (n + 1), [0.0] * (m + 1)
    p, way = [0] * (m + 1), [0] * (m + 1)
    for i in range(1, n + 1):
        p[0], j0 = i, 0
        minv, used = [inf] * (m + 1), [False] * (m + 1)
        while True:
            used[j0] = True
            i0, delta, j1 = p[j0], inf, 0
            row = cost[i0 - 1]
            for j in range(1, m + 1):
                if not used[j]:
                    cur = row[j - 1] - u[i0] - v[j]
                    if cur < minv[j]:
                        minv[j], way[j] = cur, j0
                    if minv[j] < delta:
                        delta, j1 = minv[j], j
            for j in range(m + 1):
                if used[j]:
                    u[p[j]] += delta
                    v[j] -= delta
                else:
                    minv[j] -= delta
            j0 = j1
            if p[j0] == 0:
                break
        while j0:
            j1 = way[j0]
            p[j0] = p[j1]
            j0 = j1
    col = [-1] * n
    for j in range(1, m + 1):
        if p[j]:
            col[p[j] - 1] = j - 1
    return col


def match_limbs(limb, ia, ib, w, num_limbs: int, num_candidates: int, exact_max: int = 40) -> np.ndarray:
    """One-to-one pairs per limb of maximum total weight: accepted row indices.

    The passing pairs of all limbs form one bipartite graph on (limb, candidate)
    keys; its connected components are matched independently. A component that
    is a single pair is taken; larger ones get an exact maximum-weight matching
    (``_hungarian``), up to ``exact_max`` pairs; beyond that (noise) the greedy
    by weight (the authors' rule, §5.4). Crowd case: a and a' are two persons'
    joints of one type lying close together, b is the joint both could reach;
    the greedy gives b to whichever scores higher and leaves a's own partner
    unmatched, the matching keeps both persons' limbs.
    """
    ka = limb * num_candidates + ia
    kb = limb * num_candidates + ib + num_limbs * num_candidates
    # components: label propagation over the pairs (a few vector passes)
    uk, inv = np.unique(np.concatenate([ka, kb]), return_inverse=True)
    ea, eb = inv[:ka.size], inv[ka.size:]
    lab = np.arange(uk.size)
    while True:
        e = np.minimum(lab[ea], lab[eb])
        new = lab.copy()
        np.minimum.at(new, ea, e)
        np.minimum.at(new, eb, e)
        new = new[new]
        if np.array_equal(new, lab):
            break
        lab = new
    comp = lab[ea]
    size = np.bincount(comp, minlength=uk.size)
    single = size[comp] == 1
    out = [np.flatnonzero(single)]
    multi = np.flatnonzero(~single)
    if multi.size:
        multi = multi[np.argsort(comp[multi], kind="stable")]
        bounds = np.flatnonzero(np.diff(comp[multi])) + 1
        big = []
        for grp in np.split(multi, bounds):
            if grp.size > exact_max:
                big.append(grp)
                continue
            ra, ca = np.unique(ea[grp], return_inverse=True)
            rb, cb = np.unique(eb[grp], return_inverse=True)
            flip = ra.size > rb.size
            n, m = (rb.size, ra.size) if flip else (ra.size, rb.size)
            rows, cols = (cb, ca) if flip else (ca, cb)
            cost = [[0.0] * (m + n) for _ in range(n)]   # n zero-cost "unmatched" columns
            for r in range(n):
                cost[r][m + r] = 0.0
            big_cost = 1e9
            for r in range(n):
                cost[r][:m] = [big_cost] * m
            idx = {}
            for q, r, c in zip(grp.tolist(), rows.tolist(), cols.tolist()):
                cost[r][c] = -float(w[q])
                idx[r, c] = q
            for r, c in enumerate(_hungarian(cost, n, m + n)):
                if (r, c) in idx:
                    out.append(np.asarray([idx[r, c]]))
        if big:
            grp = np.concatenate(big)
            o = grp[np.argsort(-w[grp], kind="stable")]
            out.append(o[_grouping._greedy_matching(ka[o], kb[o], 2 * num_limbs * num_candidates)])
    return np.concatenate(out)


def assemble_global(sampler, types, xy, scores, spec, cfg, image_height) -> list:
    """Candidates -> persons [(ids (J,) list, -1 empty; total score)], like ``_grouping.assemble``."""
    import heapq
    num_limbs, num_types = spec.num_limbs, spec.num_internal
    limb, ia, ib, score, length, key, _ = _grouping.limb_pairs(sampler, types, xy, scores, spec, cfg,
                                                               image_height)
    if limb.size == 0:
        return []
    rows = match_limbs(limb, ia, ib, score, num_limbs, len(types))
    n = len(types)
    cand = scores.tolist()
    # clusters: members by type
    ids = [dict() for _ in range(n)]
    for i in range(n):
        ids[i][int(types[i])] = i
    mask = [1 << int(t) for t in types.tolist()]
    total = list(cand)
    parts = [1] * n
    link = [dict() for _ in range(n)]
    for a, b, s in zip(ia[rows].tolist(), ib[rows].tolist(), score[rows].tolist()):
        link[a][b] = link[a].get(b, 0.0) + s
        link[b][a] = link[b].get(a, 0.0) + s
    heap = [(-w, a, b) for a in range(n) for b, w in link[a].items() if a < b]
    heapq.heapify(heap)
    alive = [True] * n
    while heap:
        w, a, b = heapq.heappop(heap)
        if not (alive[a] and alive[b]) or link[a].get(b) != -w:
            continue
        if mask[a] & mask[b]:
            continue
        # merge b into a
        ids[a].update(ids[b])
        mask[a] |= mask[b]
        total[a] += total[b] + (-w)
        parts[a] += parts[b]
        alive[b] = False
        del link[a][b]
        del link[b][a]
        for c, wc in link[b].items():
            del link[c][b]
            nw = link[a].get(c, 0.0) + wc
            link[a][c] = nw
            link[c][a] = nw
        for c, wc in link[a].items():
            heapq.heappush(heap, (-wc, a, c) if a < c else (-wc, c, a))
        link[b] = {}
    out = []
    for p in range(n):
        if not alive[p] or parts[p] < cfg.min_parts or total[p] / parts[p] < cfg.min_mean_score:
            continue
        row = [-1] * num_types
        for t, i in ids[p].items():
            row[t] = i
        out.append((row, total[p]))
    return out
