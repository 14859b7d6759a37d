"""Limb scoring and greedy person assembly with redundant limbs (``simple_pose.md`` §5.4-5.5).

Shapes: N keypoint candidates (ids 0..N-1, ordered by type), L limbs (30), Q
candidate pairs, J internal points (18), P persons.

``score_limbs`` evaluates every candidate pair of every limb in one vectorised
pass: n = min(round(|b - a| + 1), 20) points on the segment (``np.linspace``
arithmetic, rounded half-to-even to integer input pixels), read from the
bicubically upsampled limb map through ``CubicSampler`` (exactly the pixels the
authors read from their full-resolution map). The samples are read in two
rounds: the even-indexed half first; a pair whose failures already exceed what
the ``connect_ratio`` test allows is rejected without reading the rest (exact:
it could not pass). Where one limb needs more samples than a full upsampling of
its channel costs, that channel is upsampled once and indexed directly.

``assemble`` is the authors' sequential greedy grouping, kept literal, but each
person is a small Python object and an owner table (candidate id -> person)
replaces the scan over all persons: a candidate occupies at most one person's
slot of its type, so "persons whose tA slot is idA or tB slot is idB" is at
most two look-ups. Persons keep their creation order, which is the order in
which the authors' loop would find them.

Imports without TensorFlow.
"""
from __future__ import annotations

import numpy as np

# Above this many samples for one limb, upsampling the whole channel (cv2, about
# 0.3-0.6 ms at 512x512) is cheaper than 16 gathers per sample.
FULL_CHANNEL_SAMPLES = 40_000


def _pairs(types, num_types, limb_from, limb_to):
    """All (a, b) candidate pairs per limb with both types present, i-major like the authors.

    Returns (limb (Q,), ia (Q,), ib (Q,), special (L,) bool: a type is empty, counts (J,)).
    """
    counts = np.bincount(types, minlength=num_types)
    starts = np.cumsum(counts) - counts
    fr, to = np.asarray(limb_from), np.asarray(limb_to)
    na, nb = counts[fr], counts[to]
    special = (na == 0) | (nb == 0)
    sizes = na * nb
    limb = np.repeat(np.arange(fr.size), sizes)
    r = np.arange(limb.size) - np.repeat(np.cumsum(sizes) - sizes, sizes)
    nbl = nb[limb]
    ia = starts[fr][limb] + r // np.maximum(nbl, 1)
    ib = starts[to][limb] + r % np.maximum(nbl, 1)
    return limb, ia, ib, special, counts


def _sample_points(xa, xb, n, s):
    """np.linspace(xa, xb, n)[s] for arrays (start + s*step; the last point is xb exactly)."""
    step = (xb - xa) / np.maximum(n - 1, 1)
    v = s * step + xa
    return np.where((s == n - 1) & (n > 1), xb, v)


def _read(sampler, limb, q, s, xy, ia, ib, n, channel_offset, full_maps):
    """Limb-map values at sample s of pairs q (integer input pixels, rounded half-to-even)."""
    a, b, nq = ia[q], ib[q], n[q]
    x = np.rint(_sample_points(xy[a, 0], xy[b, 0], nq, s)).astype(np.int64)
    y = np.rint(_sample_points(xy[a, 1], xy[b, 1], nq, s)).astype(np.int64)
    np.clip(x, 0, sampler.width - 1, out=x)
    np.clip(y, 0, sampler.height - 1, out=y)
    lk = limb[q]
    if not full_maps:
        return sampler.sample(lk + channel_offset, x, y)
    out = np.empty(q.size, np.float32)
    dense = np.isin(lk, list(full_maps))
    for k in np.unique(lk[dense]):  # one full-res channel per dense limb
        m = lk == k
        out[m] = full_maps[int(k)][y[m], x[m]]
    sparse = ~dense
    out[sparse] = sampler.sample(lk[sparse] + channel_offset, x[sparse], y[sparse])
    return out


def _stages(smax: int) -> list:
    """Sample indices in evaluation rounds: every 4th from the middle ones, every 4th, the rest.

    Middle samples fail first for a pair joining two different persons, so most
    wrong pairs are rejected after reading a quarter of their samples.
    """
    idx = np.arange(smax)
    return [idx[idx % 4 == 2], idx[idx % 4 == 0], idx[idx % 2 == 1]]


def score_limbs(sampler, types, xy, scores, spec, cfg, image_height: float) -> tuple:
    """Accepted connections of every limb (§5.4).

    Args:
        sampler: CubicSampler over the maps (limb k is channel spec.limb_start + k).
        types, xy, scores: the candidates from ``find_peaks``.
        spec, cfg: KeypointSpec and BodyPartsCodecConfig.
        image_height: H_img of the length prior min(0.5 H_img / L - 1, 0).

    Returns:
        (connections, special): connections is a list over limbs of (M_k, 4)
        float64 arrays (id_a, id_b, S, L) in acceptance order; special[k] is
        True where a candidate set was empty (the limb is skipped in grouping).
    """
    num_limbs = len(spec.limb_from)
    limb, ia, ib, special, counts = _pairs(types, spec.num_internal, spec.limb_from, spec.limb_to)
    conns = [np.zeros((0, 4))] * num_limbs
    d = xy[ib] - xy[ia]
    length = np.sqrt(d[:, 0] * d[:, 0] + d[:, 1] * d[:, 1])
    keep = length != 0
    limb, ia, ib, length = limb[keep], ia[keep], ib[keep], length[keep]
    if limb.size == 0:
        return conns, special
    n = np.minimum(np.rint(length + 1), cfg.max_limb_samples).astype(np.int64)
    # Smallest passing count c >= ratio*n, evaluated in float like the authors.
    allowed = n - np.ceil(cfg.connect_ratio * n).astype(np.int64)
    # Dense limbs (noise, crowds): upsample their channel once.
    per_limb = np.bincount(limb, weights=n, minlength=num_limbs)
    full_maps = {int(k): sampler.full(spec.limb_start + int(k))
                 for k in np.flatnonzero(per_limb > FULL_CHANNEL_SAMPLES)}
    fails = np.zeros(limb.size, np.int64)
    total = np.zeros(limb.size, np.float64)
    thre2 = np.float32(cfg.limb_sample_threshold)
    alive = np.arange(limb.size)
    for s_idx in _stages(int(n.max())):
        if s_idx.size == 0:
            continue
        q = np.repeat(alive, s_idx.size)
        s = np.tile(s_idx, alive.size)
        valid = s < n[q]
        q, s = q[valid], s[valid]
        v = _read(sampler, limb, q, s, xy, ia, ib, n, spec.limb_start, full_maps)
        fails += np.bincount(q, weights=(v <= thre2), minlength=limb.size).astype(np.int64)
        total += np.bincount(q, weights=v, minlength=limb.size)
        alive = alive[fails[alive] <= allowed[alive]]
        if alive.size == 0:
            return conns, special
    q = alive
    score = total[q] / n[q] + np.minimum(0.5 * image_height / length[q] - 1.0, 0.0)
    good = score > 0
    q, score = q[good], score[good]
    key = 0.5 * score + 0.25 * scores[ia[q]] + 0.25 * scores[ib[q]]
    # Greedy one-to-one choice by key, per limb (stable, like Python's sorted).
    order = np.lexsort((-key, limb[q]))
    q, score = q[order], score[order]
    caps = np.minimum(counts[np.asarray(spec.limb_from)], counts[np.asarray(spec.limb_to)]).tolist()
    rows, cur, used_a, used_b, taken = [], -1, set(), set(), 0
    for r, (k, a, b) in enumerate(zip(limb[q].tolist(), ia[q].tolist(), ib[q].tolist())):
        if k != cur:
            cur, taken = k, 0
            used_a, used_b = set(), set()
        elif taken >= caps[k] or a in used_a or b in used_b:
            continue
        used_a.add(a)
        used_b.add(b)
        taken += 1
        rows.append(r)
    rows = np.asarray(rows, np.int64)
    qr = q[rows]
    table = np.stack([ia[qr], ib[qr], score[rows], length[qr]], axis=1)
    split = np.searchsorted(limb[qr], np.arange(1, num_limbs))
    conns = np.split(table, split)
    return conns, special


class _Person:
    __slots__ = ("ids", "attach", "mask", "total", "parts", "longest", "seq")

    def __init__(self, num_types, seq):
        self.ids = [-1] * num_types
        self.attach = [-1.0] * num_types
        self.mask = 0          # bit t set: slot t filled (disjointness test)
        self.total = 0.0
        self.parts = 0
        self.longest = 0.0
        self.seq = seq         # creation order = the authors' subset order


def assemble(conns, special, types, scores, spec, cfg) -> list:
    """Greedy assembly over limbs in order (§5.5), with the authors' quirks.

    Returns a list of (ids (J,) int list with -1 for empty, total score) per kept
    person, in creation order. Quirks kept: a match found only through the tB
    slot never adds idA; the found == 2 conflict branch does nothing
    (``remove_recon`` = 0); a 3rd matching person cannot occur (see module doc).
    """
    num_types = spec.num_internal
    len_rate, tole = cfg.length_rate, cfg.connection_tolerance
    cand = scores.tolist()
    owner = {}  # candidate id -> the person holding it
    persons = []
    created = 0
    for k, rows in enumerate(conns):
        if special[k] or len(rows) == 0:
            continue
        ta, tb = spec.limb_from[k], spec.limb_to[k]
        for ida, idb, s, length in rows.tolist():
            ida, idb = int(ida), int(idb)
            pa, pb = owner.get(ida), owner.get(idb)
            # Only the person owning idA in its tA slot (or idB in tB) matches.
            if pa is not None and pa.ids[ta] != ida:
                pa = None
            if pb is not None and pb.ids[tb] != idb:
                pb = None
            if pa is None and pb is None:
                p = _Person(num_types, created)
                created += 1
                p.ids[ta], p.attach[ta] = ida, s
                p.ids[tb], p.attach[tb] = idb, s
                p.mask = (1 << ta) | (1 << tb)
                p.parts, p.longest = 2, length
                p.total = cand[ida] + cand[idb] + s
                persons.append(p)
                owner[ida] = owner[idb] = p
                continue
            if pa is None or pb is None or pa is pb:
                j = pa or pb
                old = j.ids[tb]
                if old == -1 and len_rate * j.longest > length:
                    j.ids[tb], j.attach[tb] = idb, s
                    j.mask |= 1 << tb
                    j.parts += 1
                    j.total += cand[idb] + s
                    j.longest = max(j.longest, length)
                    owner[idb] = j
                elif old != idb:
                    # An empty slot lands here only when the length check failed
                    # above (its attach score -1 < s), so it is skipped here too.
                    if j.attach[tb] >= s or len_rate * j.longest <= length:
                        continue
                    j.total -= cand[old] + j.attach[tb]
                    del owner[old]
                    j.ids[tb], j.attach[tb] = idb, s
                    j.total += cand[idb] + s
                    j.longest = max(j.longest, length)
                    owner[idb] = j
                elif j.attach[tb] <= s:
                    j.total += s - j.attach[tb]
                    j.attach[tb] = s
                    j.longest = max(j.longest, length)
                continue
            # found == 2, in creation order
            j1, j2 = (pa, pb) if pa.seq < pb.seq else (pb, pa)
            if j1.mask & j2.mask:
                continue  # conflict: no-op with remove_recon = 0
            m1 = min(a for a, i in zip(j1.attach, j1.ids) if i > -1)
            m2 = min(a for a, i in zip(j2.attach, j2.ids) if i > -1)
            if s < tole * min(m1, m2) or len_rate * j1.longest <= length:
                continue
            for t in range(num_types):
                if j2.ids[t] > -1:
                    j1.ids[t], j1.attach[t] = j2.ids[t], j2.attach[t]
                    owner[j2.ids[t]] = j1
            j1.mask |= j2.mask
            j1.parts += j2.parts
            j1.total += j2.total + s
            j1.longest = max(j1.longest, length)
            j2.parts = 0  # dead: merged into j1
    out = []
    for p in persons:
        if p.parts == 0:
            continue
        if p.parts < cfg.min_parts or p.total / p.parts < cfg.min_mean_score:
            continue
        out.append((p.ids, p.total))
    return out
