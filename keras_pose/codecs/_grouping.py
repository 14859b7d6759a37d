"""Limb scoring and greedy person assembly with redundant limbs (``docs/method_bottom_up.md`` §5.4-5.5).

Shapes: N keypoint candidates (ids 0..N-1, ordered by type), L limbs, Q
candidate pairs, J map points (L, J from the KeypointSpec; COCO: 30, 18), P persons.

``score_limbs`` evaluates every candidate pair of every limb in one vectorised
pass: n = min(round(|b - a| + 1), 20) points on the segment (``np.linspace``
arithmetic, rounded half-to-even to integer input pixels), read from the
bicubically upsampled limb map through ``CubicSampler`` (exactly the pixels the
authors read from their full-resolution map). The samples are read in three
rounds, middle samples first; a pair whose failures already exceed what the
``connect_ratio`` test allows is rejected without reading the rest (exact: it
could not pass). Where the image needs more samples than a full upsampling of
the limb channels costs (noise, big crowds), they are upsampled once with cv2
and indexed directly. With numba installed the same test runs as one compiled
loop over pairs and samples instead (``_kernels.limb_test``, middle samples
first, same early rejection). The per-limb greedy one-to-one choice by key is
vectorised in rounds (``_greedy_matching``) and accepts exactly the rows the
authors' sequential scan accepts.

``assemble`` is the authors' sequential greedy grouping, kept literal
(``_kernels._assemble``), but an owner table (candidate id -> person) replaces
the scan over all persons: a candidate occupies at most one person's slot of its
type, so "persons whose tA slot is idA or tB slot is idB" is at most two
look-ups. Persons keep their creation order, which is the order in which the
authors' loop would find them.

Imports without TensorFlow.
"""
from __future__ import annotations

import functools

import numpy as np

from keras_pose.codecs import _kernels

# The compiled limb test (``_kernels``) where numba is installed, else NumPy.
USE_KERNELS = _kernels.AVAILABLE
# From this many candidate pairs the compiled limb test first upsamples the limb
# maps along x (``CubicSampler.rows``, ~2 ms) and then reads 4 values a sample
# instead of 16 (6 persons: ~800 pairs, 24: ~15 000, noise: 30 000): it pays where
# most pairs pass and are read in full (noise), not in clean crowds.
ROWS_MIN_PAIRS = 20_000
# Above this many limb samples in an image, one cv2 upsampling of all limb
# channels (a few ms at 512x512) is cheaper than 16 gathers per sample.
DENSE_SAMPLES = 150_000
# Samples evaluated per chunk of pairs (keeps the float64 temporaries in cache).
CHUNK_SAMPLES = 32_768


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


def cap_pairs(types, scores, spec, budget: int) -> np.ndarray:
    """Candidates to keep so that at most ``budget`` pairs are scored (0: all).

    With c_t candidates of type t a limb t_a -> t_b has c_a * c_b pairs. Over
    budget, every type keeps its k strongest candidates (refined score), k the
    largest with sum_limbs min(c_a, k) * min(c_b, k) <= budget. Returns indices
    into the candidates, ascending (the authors' id order is kept).
    """
    counts = np.bincount(types, minlength=spec.num_internal)
    fr, to = np.asarray(spec.limb_from), np.asarray(spec.limb_to)
    if budget <= 0 or int((counts[fr] * counts[to]).sum()) <= budget:
        return np.arange(types.size)
    k = int(counts.max())
    while k > 1 and int((np.minimum(counts[fr], k) * np.minimum(counts[to], k)).sum()) > budget:
        k -= 1
    order = np.lexsort((-scores, types))          # by type, strongest first
    rank = np.empty(types.size, np.int64)
    starts = np.cumsum(counts) - counts
    rank[order] = np.arange(types.size) - np.repeat(starts, counts)
    return np.flatnonzero(rank < k)


class _Segments:
    """Candidate segments of every pair and their limb-map reads (§5.4).

    Sample s of a pair with n samples sits at np.linspace(a, b, n)[s], computed
    with NumPy's own arithmetic (a + s * step, the end point exactly b) so that
    the half-to-even rounding to pixels matches the authors' bit for bit. No
    clipping is needed: the endpoints lie inside the input (refined peaks move
    at most ``radius`` and only where the window fits), so do their rounded
    convex combinations. Values come from sparse bicubic taps, or, when the
    image needs many samples (noise, big crowds), from one cv2 upsampling of all
    limb channels.
    """

    def __init__(self, sampler, xy, ia, ib, n, limb, channel_offset, num_limbs, dense):
        self.x0, self.y0 = xy[ia, 0], xy[ia, 1]
        self.x1, self.y1 = xy[ib, 0], xy[ib, 1]
        div = np.maximum(n - 1, 1)
        self.dx, self.dy = (self.x1 - self.x0) / div, (self.y1 - self.y0) / div
        self.n, self.limb, self.smax = n, limb, int(n.max())
        self.sampler, self.offset, self.num_limbs = sampler, channel_offset, num_limbs
        self.width = sampler.width
        self.full = sampler.full_block(channel_offset, num_limbs).reshape(-1) if dense else None

    def _values(self, q, s, last):
        """(P, S) values at sample indices s (P, S) or (S,); ``last`` marks end points
        ((P, S) bool, or (S,) bool when every pair has smax samples)."""
        x = s * self.dx[q][:, None] + self.x0[q][:, None]
        y = s * self.dy[q][:, None] + self.y0[q][:, None]
        if last.ndim == 1:  # end points sit in known columns
            x[:, last] = self.x1[q][:, None]
            y[:, last] = self.y1[q][:, None]
        else:
            x = np.where(last, self.x1[q][:, None], x)
            y = np.where(last, self.y1[q][:, None], y)
        k = self.limb[q][:, None]
        if self.full is not None:  # one gather from the upsampled limb maps
            idx = np.rint(y) * self.width
            idx += np.rint(x)
            idx *= self.num_limbs
            idx += k
            return self.full.take(idx.astype(np.int32) if self.full.size < 2**31 else idx.astype(np.int64))
        xi, yi = np.rint(x).astype(np.int64), np.rint(y).astype(np.int64)
        k = np.broadcast_to(k + self.offset, xi.shape)
        return self.sampler.sample(k.ravel(), xi.ravel(), yi.ravel()).reshape(xi.shape)

    def read(self, q, s_idx, thre2):
        """Pairs q at samples s_idx -> (failures <= thre2 (P,), sum of values (P,) float64)."""
        fails = np.zeros(q.size, np.int64)
        total = np.zeros(q.size, np.float64)
        full = self.n[q] == self.smax
        if self.smax > 1 and full.any():  # the common case: no per-pair masks
            qf = q[full]
            ff = np.empty(qf.size, np.int64)
            tf = np.empty(qf.size, np.float64)
            last = s_idx == self.smax - 1
            # Cache-sized chunks: the chain of elementwise ops stays in L2 (noise: 69k pairs).
            step = max(1, CHUNK_SAMPLES // s_idx.size)
            for lo in range(0, qf.size, step):
                v = self._values(qf[lo:lo + step], s_idx, last)
                ff[lo:lo + step] = (v <= thre2).sum(1)
                tf[lo:lo + step] = v.sum(1, dtype=np.float64)
            fails[full], total[full] = ff, tf
        short = ~full if self.smax > 1 else np.ones(q.size, bool)
        if short.any():
            qs, ns = q[short], self.n[q[short]][:, None]
            valid = s_idx < ns
            s = np.minimum(s_idx, ns - 1)               # invalid slots re-read a valid one
            v = self._values(qs, s, (s == ns - 1) & (ns > 1))
            fails[short] = ((v <= thre2) & valid).sum(1)
            total[short] = np.where(valid, v, 0).sum(1, dtype=np.float64)
        return fails, total


def order_desc(w) -> np.ndarray:
    """Indices that sort w descending, ties in index order: ``np.argsort(-w,
    kind="stable")``, computed with the ~4x faster unstable sort where w has no
    ties (then both orders are the same)."""
    o = np.argsort(-w)
    sw = w[o]
    if sw.size > 1 and bool(np.any(sw[1:] == sw[:-1])):
        o = np.argsort(-w, kind="stable")
    return o


def _greedy_matching(key_a, key_b, num_keys: int) -> np.ndarray:
    """Rows the sequential greedy would accept, scanning rows in order and taking a
    row iff neither its key_a nor its key_b was taken before (§5.4).

    Vectorised in rounds: a remaining row that is the first remaining row of both
    its keys is accepted by the sequential scan (every earlier row uses other
    keys), so all such rows are accepted at once and the rows sharing their keys
    dropped. A few rounds suffice even for noise (2304 pairs per limb). The
    authors' early stop at min(|A|, |B|) connections never binds: a matching
    cannot be larger. Returns accepted row indices, ascending. With numba the
    sequential scan itself runs compiled (``_kernels.greedy``).
    """
    if USE_KERNELS:
        return _kernels.greedy(key_a, key_b, num_keys)
    rem = np.arange(key_a.size)
    taken_a = np.zeros(num_keys, bool)
    taken_b = np.zeros(num_keys, bool)
    accepted = []
    while rem.size:
        ka, kb = key_a[rem], key_b[rem]
        pos = np.arange(rem.size)
        first_a = np.full(num_keys, rem.size)
        first_b = np.full(num_keys, rem.size)
        np.minimum.at(first_a, ka, pos)
        np.minimum.at(first_b, kb, pos)
        win = (first_a[ka] == pos) & (first_b[kb] == pos)
        accepted.append(rem[win])
        taken_a[ka[win]] = True
        taken_b[kb[win]] = True
        rem = rem[~(taken_a[ka] | taken_b[kb])]
    return np.sort(np.concatenate(accepted)) if accepted else np.zeros(0, np.int64)


@functools.lru_cache(maxsize=8)
def _stages(smax: int) -> tuple:
    """Sample indices in 3 evaluation rounds: 5 spread over the middle, 4 more, the rest.

    Middle samples fail first for a pair joining two different persons, so many
    wrong pairs are rejected after a quarter of their samples (the order was
    picked by counting reads on 6-person scenes: about 20% fewer than halves).
    """
    pos = lambda f: np.unique(np.rint(np.asarray(f) / 19.0 * (smax - 1)).astype(np.int64))  # noqa: E731
    first = pos([4, 7, 10, 13, 16])
    second = np.setdiff1d(pos([2, 8, 12, 18]), first)
    rest = np.setdiff1d(np.arange(smax), np.concatenate([first, second]))
    return first, second, rest


def limb_pairs(sampler, types, xy, scores, spec, cfg, image_height: float) -> tuple:
    """Every candidate pair that passes the limb test, all limbs at once (§5.4).

    Args:
        sampler: CubicSampler over the maps (limb k is channel spec.limb_start + k).
        types, xy, scores: the candidates from ``find_peaks``.
        spec, cfg: KeypointSpec and BodyPartsCodecConfig.
        image_height: H_img of the length prior min(0.5 H_img / L - 1, 0).

    Returns:
        (limb, ia, ib, score, length, key, special): (Q,) arrays of the passing
        pairs, limb-major then i-major (the authors' order); key = 0.5 S +
        0.25 score_a + 0.25 score_b; special (L,) bool: a candidate set was empty.
    """
    num_limbs = len(spec.limb_from)
    thre2 = np.float32(cfg.limb_sample_threshold)
    if USE_KERNELS:
        counts = np.bincount(types, minlength=spec.num_internal)
        fr, to = np.asarray(spec.limb_from), np.asarray(spec.limb_to)
        special = (counts[fr] == 0) | (counts[to] == 0)
        rows = int((counts[fr] * counts[to]).sum()) > ROWS_MIN_PAIRS
        if rows:   # noise: x-upsampled limb maps
            flat, oy, cstride = sampler.rows(spec.limb_start, num_limbs)
            chan = np.arange(num_limbs, dtype=np.uint64) * np.uint64(cstride)
        else:
            flat, oy = sampler.flat, sampler.oy64
            chan = np.arange(spec.limb_start, spec.limb_start + num_limbs, dtype=np.uint64)
        return (*_kernels.limb_test(
            xy, np.asarray(scores, np.float64), np.cumsum(counts) - counts, counts, fr, to, chan,
            flat, oy, sampler.wy, sampler.ox64, sampler.wx, rows,
            float(cfg.min_limb_length), int(cfg.max_limb_samples), float(cfg.connect_ratio), thre2,
            _kernels.sample_order(int(cfg.max_limb_samples)), float(image_height)), special)
    limb, ia, ib, special, counts = _pairs(types, spec.num_internal, spec.limb_from, spec.limb_to)
    d = xy[ib] - xy[ia]
    length = np.sqrt(d[:, 0] * d[:, 0] + d[:, 1] * d[:, 1])
    keep = length > cfg.min_limb_length   # 0: the authors' "skip L == 0"
    limb, ia, ib, length = limb[keep], ia[keep], ib[keep], length[keep]
    empty = np.zeros(0, np.int64), np.zeros(0)
    if limb.size == 0:
        return empty[0], empty[0], empty[0], empty[1], empty[1], empty[1], special
    n = np.minimum(np.rint(length + 1), cfg.max_limb_samples).astype(np.int64)
    # Smallest passing count c >= ratio*n, evaluated in float like the authors.
    allowed = n - np.ceil(cfg.connect_ratio * n).astype(np.int64)
    segs = _Segments(sampler, xy, ia, ib, n, limb, spec.limb_start, num_limbs,
                     dense=int(n.sum()) > DENSE_SAMPLES)
    fails = np.zeros(limb.size, np.int64)
    total = np.zeros(limb.size, np.float64)
    alive = np.arange(limb.size)
    # Few pairs (small scenes): one round; the per-round overhead outweighs the
    # samples an early rejection would save.
    rounds = _stages(segs.smax) if limb.size * segs.smax > 4000 else [np.arange(segs.smax)]
    for s_idx in rounds:
        if s_idx.size == 0:
            continue
        f, t = segs.read(alive, s_idx, thre2)
        fails[alive] += f
        total[alive] += t
        alive = alive[fails[alive] <= allowed[alive]]
        if alive.size == 0:
            return empty[0], empty[0], empty[0], empty[1], empty[1], empty[1], special
    return _passing(limb[alive], ia[alive], ib[alive], n[alive], length[alive], total[alive], scores,
                    image_height, special)


def _passing(limb, ia, ib, n, length, total, scores, image_height, special) -> tuple:
    """Pairs that passed the sample count -> ``limb_pairs``' outputs: the ones whose
    length-penalised mean S is > 0, with their key (§5.4)."""
    score = total / n + np.minimum(0.5 * image_height / length - 1.0, 0.0)
    good = score > 0
    limb, ia, ib, length, score = limb[good], ia[good], ib[good], length[good], score[good]
    key = 0.5 * score + 0.25 * scores[ia] + 0.25 * scores[ib]
    return limb, ia, ib, score, length, key, special


def match_per_limb(limb, ia, ib, key, num_limbs: int, num_candidates: int) -> np.ndarray:
    """Greedy one-to-one choice by key within each limb (§5.4): accepted row indices,
    limb-major, by descending key within a limb (stable, like Python's sorted);
    compiled as one call where numba is installed (``_kernels.match_per_limb``)."""
    if USE_KERNELS:
        return _kernels.match_per_limb(limb, ia, ib, np.asarray(key, np.float64), num_limbs,
                                       num_candidates)
    # The rows run in limb order already: sort each limb's segment (cheaper than lexsort).
    bounds = np.searchsorted(limb, np.arange(num_limbs + 1)).tolist()
    order = np.concatenate([lo + order_desc(key[lo:hi])
                            for lo, hi in zip(bounds[:-1], bounds[1:])])
    rows = _greedy_matching(limb[order] * num_candidates + ia[order],
                            limb[order] * num_candidates + ib[order],
                            num_keys=num_limbs * num_candidates)
    return order[rows]


def score_limbs(sampler, types, xy, scores, spec, cfg, image_height: float) -> tuple:
    """Accepted connections of every limb (§5.4), for the authors' assembly.

    Returns:
        (connections, special): connections is a list over limbs of (M_k, 4)
        float64 arrays (id_a, id_b, S, L) in acceptance order; special[k] is
        True where a candidate set was empty (the limb is skipped in grouping).
    """
    num_limbs = len(spec.limb_from)
    limb, ia, ib, score, length, key, special = limb_pairs(sampler, types, xy, scores, spec, cfg,
                                                           image_height)
    if limb.size == 0:
        return [np.zeros((0, 4))] * num_limbs, special
    rows = match_per_limb(limb, ia, ib, key, num_limbs, len(types))
    table = np.stack([ia[rows], ib[rows], score[rows], length[rows]], axis=1)
    bounds = np.searchsorted(limb[rows], np.arange(num_limbs + 1)).tolist()
    conns = [table[bounds[k]:bounds[k + 1]] for k in range(num_limbs)]
    return conns, special


def assemble(conns, special, scores, spec, cfg, fix_tb: bool = False, raw: bool = False) -> list:
    """Greedy assembly over limbs in order (§5.5), with the authors' quirks
    (``_kernels.assemble``, compiled where numba is installed).

    ``fix_tb`` (keras_pose's "global" grouping) removes the first quirk: a person
    matched through its tB slot also takes idA when its tA slot is empty.
    ``raw`` returns the assembly's arrays (ids, attach, total, parts, longest)
    before the final filter.

    Returns a list of (ids (J,) int list with -1 for empty, total score) per kept
    person, in creation order. Quirks kept: a match found only through the tB
    slot never adds idA; the found == 2 conflict branch does nothing
    (``remove_recon`` = 0); a 3rd matching person cannot occur (see module doc).
    """
    sizes = [len(c) for c in conns]
    table = np.concatenate(conns) if sum(sizes) else np.zeros((0, 4))
    state = assemble_rows(table[:, 0].astype(np.int64), table[:, 1].astype(np.int64),
                          table[:, 2], table[:, 3], np.r_[0, np.cumsum(sizes)], special, scores,
                          spec, cfg, fix_tb)
    if raw:
        return state
    return [(i.tolist(), float(t)) for i, t in zip(*final_filter(state, cfg))]


def assemble_rows(ia, ib, score, length, limb_ptr, special, scores, spec, cfg,
                  fix_tb: bool) -> tuple:
    """``assemble`` on the accepted connections as arrays, limb k's in rows
    limb_ptr[k]:limb_ptr[k + 1] -> the assembly's arrays (ids, attach, total, parts,
    longest; ``_kernels.assemble``)."""
    return _kernels.assemble(
        ia, ib, score, length, np.asarray(limb_ptr, np.int64), np.asarray(special, bool),
        np.asarray(spec.limb_from, np.int64), np.asarray(spec.limb_to, np.int64),
        np.asarray(scores, np.float64), int(spec.num_internal), float(cfg.length_rate),
        float(cfg.connection_tolerance), bool(fix_tb), compiled=USE_KERNELS)


def final_filter(state, cfg) -> tuple:
    """The assembly's arrays -> (ids (P, J) int64, -1 empty; total (P,) float64) of
    the persons kept: not dead (merged), at least ``min_parts`` parts and a mean
    score of at least ``min_mean_score`` (§5.5)."""
    ids, _, total, parts, _ = state
    keep = (parts > 0) & (parts >= cfg.min_parts)
    keep &= total / np.maximum(parts, 1) >= cfg.min_mean_score
    return ids[keep], total[keep]
