"""Compiled loops of the bottom-up decoder (``docs/method_bottom_up.md`` §5.3-5.4), via numba.

Shapes: (h, w, T) keypoint maps at stride s, H x W = s*h x s*w input, n seeds,
Q candidate pairs, S <= ``max_limb_samples`` samples per pair.

The NumPy paths of ``_peaks`` and ``_grouping`` spend most of their time in
per-call overhead and gathers; these kernels run the same arithmetic in single
loops. Each kernel's docstring names the NumPy code it replaces; results agree
with it up to float32 summation order (checked in ``tests/test_kernels.py``).

**Limb test** (``score_pairs``, replaces ``_grouping._Segments``).
``_grouping.limb_pairs`` reads the bicubically upsampled limb map at the n
rounded points of every candidate segment and counts the samples above thre2;
crowds of 24 persons need ~10^5 reads and noise ~10^6. The kernel does the same
arithmetic pair by pair and stops reading a pair as soon as its failures exceed
what the ``connect_ratio`` test allows (exact: it could not pass). The values are
those of ``CubicSampler`` (same taps, same float32 weight table, summed in
float32), the sample points those of ``np.linspace`` (a + s * step, end point
exactly b, rounded half to even).

**Peaks** (``seeds``, ``patch_peaks``, replace ``_peaks._seeds`` and
``_peaks._patch_peaks``, same signatures and results): the low-resolution seeds
and, per seed, its bicubic patch (U @ block @ U.T), 3x3 NMS, threshold and 5x5
refinement.

**Exact limb matching** (``match_components``: the per-component maximum-weight
matchings of ``_assembly.match_limbs``). Unlike the kernels above it has no
NumPy twin: without numba the same code runs in Python.

numba is optional: ``AVAILABLE`` is False without it (or with
``KERAS_POSE_NO_NUMBA=1``) and the decoder keeps its NumPy paths. Kernels are
compiled on first use (about 5 s once) and cached on disk by numba (next to this
file, or in its user-wide cache where that is read-only).

Imports without TensorFlow.
"""
from __future__ import annotations

import functools
import importlib.util
import os

import numpy as np

# numba is imported (and the kernels compiled or loaded from its cache) on first use.
# KERAS_POSE_NO_NUMBA=1 keeps the NumPy paths even where numba is installed.
AVAILABLE = (importlib.util.find_spec("numba") is not None
             and os.environ.get("KERAS_POSE_NO_NUMBA", "") in ("", "0"))


@functools.lru_cache(maxsize=8)
def sample_order(smax: int) -> np.ndarray:
    """(smax + 1, smax) int64: row n lists sample indices 0..n-1, middle ones first.

    A pair joining two different persons fails first in the middle of its
    segment, so reading there first rejects it after few reads. Unused slots
    are -1.
    """
    table = np.full((smax + 1, smax), -1, np.int64)
    for n in range(1, smax + 1):
        mid = (n - 1) / 2.0
        table[n, :n] = sorted(range(n), key=lambda i: (abs(i - mid), i))
    return table


def _score_pairs(flat, oy, ox, w2, stride, x0, y0, x1, y1, n, channel, allowed, thre2, order):
    """Limb test of Q pairs: (fails (Q,) int64, total (Q,) float64).

    Args:
        flat: the float32 maps, raveled: (h, w, C) ``CubicSampler.flat``, or
            channel-major ``CubicSampler.planes``.
        oy, ox: flat offsets of the 4 tap rows / columns of each input row (H, 4) /
            column (W, 4), int32 (``CubicSampler.oy``/``ox`` or those of ``planes``).
        w2: (s * s, 16) float32 2-D tap weights per pixel phase.
        stride: s.
        x0, y0, x1, y1: (Q,) float64 segment end points, input pixels.
        n: (Q,) samples per pair; channel: (Q,) flat offset of its limb's channel
            (the channel index, or index * h * w for planes).
        allowed: (Q,) most failures a passing pair may have.
        thre2: float32 sample threshold.
        order: ``sample_order`` table.

    A pair whose failures exceed ``allowed`` is left with fails = allowed + 1
    and a partial total (it fails the test either way).
    """
    q_count = x0.size
    fails = np.zeros(q_count, np.int64)
    total = np.zeros(q_count, np.float64)
    for q in range(q_count):
        nq = n[q]
        div = max(nq - 1, 1)
        dx = (x1[q] - x0[q]) / div
        dy = (y1[q] - y0[q]) / div
        ch = channel[q]
        f = 0
        t = 0.0
        for j in range(nq):
            s = order[nq, j]
            if s == nq - 1 and nq > 1:
                x, y = x1[q], y1[q]
            else:
                x = s * dx + x0[q]
                y = s * dy + y0[q]
            xi = int(np.rint(x))
            yi = int(np.rint(y))
            ph = (yi % stride) * stride + xi % stride
            v = np.float32(0.0)
            for a in range(4):
                row = oy[yi, a] + ch
                for b in range(4):
                    v += flat[row + ox[xi, b]] * w2[ph, 4 * a + b]
            if v <= thre2:
                f += 1
                if f > allowed[q]:
                    break
            t += v
        fails[q] = f
        total[q] = t
    return fails, total


def _seeds(maps, low, near_top):
    """``_peaks._seeds``' sparse case in one pass: (rows, cols, types, primary, done)
    of the seeds, in flat (row, col, type) order. A seed is >= low and >= its in-map
    8 neighbours (primary), or a 1-D maximum along its row or column within
    near_top of their maximum. done is False (and nothing returned) where more
    than 1/8 of the cells are >= low: there ``_peaks._seeds``' dilations are cheaper."""
    h, w, t = maps.shape
    size = h * w * t
    sr = np.empty(size, np.int64)
    sq = np.empty(size, np.int64)
    st = np.empty(size, np.int64)
    primary = np.empty(size, np.bool_)
    ninf = np.float32(-np.inf)
    k = 0
    above = 0
    for r in range(h):
        for q in range(w):
            for c in range(t):
                v = maps[r, q, c]
                if not v >= low:
                    continue
                above += 1
                if above * 8 > size:   # dense (noise): the caller's dilations are cheaper
                    return sr[:0], sq[:0], st[:0], primary[:0], False
                left = maps[r, q - 1, c] if q > 0 else ninf
                right = maps[r, q + 1, c] if q < w - 1 else ninf
                up = maps[r - 1, q, c] if r > 0 else ninf
                down = maps[r + 1, q, c] if r < h - 1 else ninf
                top = max(max(left, right), max(up, down))
                for dy in (-1, 1):
                    if 0 <= r + dy < h:
                        for dx in (-1, 1):
                            if 0 <= q + dx < w:
                                top = max(top, maps[r + dy, q + dx, c])
                is_primary = v >= top
                if is_primary or (((v >= left and v >= right) or (v >= up and v >= down))
                                  and v >= near_top * top):
                    sr[k], sq[k], st[k], primary[k] = r, q, c, is_primary
                    k += 1
    return sr[:k], sq[:k], st[:k], primary[:k], True


def _patch_peaks(maps, sr, sq, st, u, cells, offsets, stride, threshold, radius):
    """Patch step of ``_peaks.find_peaks`` for every seed: its bicubic patch
    U @ block @ U.T (pixels outside the input are -inf), the 3x3 maxima >= threshold
    of its search region, and their refinement (§5.3, x/y correct).

    Returns (seed (N,), ys (N,), xs (N,) int64 pixels, off_x, off_y, score (N,)
    float64), maxima in seed order then row-major within a patch (duplicates
    from overlapping patches included). score = window mean where the
    (2r+1)^2 window fits inside the input, else the peak value.
    """
    h, w, _ = maps.shape
    height, width = h * stride, w * stride
    p, b = u.shape
    lo, hi = radius, p - radius
    n = sr.size
    cap = n * (hi - lo) * (hi - lo)
    o_seed = np.empty(cap, np.int64)
    o_y = np.empty(cap, np.int64)
    o_x = np.empty(cap, np.int64)
    o_dx = np.empty(cap, np.float64)
    o_dy = np.empty(cap, np.float64)
    o_s = np.empty(cap, np.float64)
    ut = np.ascontiguousarray(u.T)
    block = np.empty((b, b), np.float32)
    tmp = np.empty((p, b), np.float32)
    patch = np.empty((p, p), np.float32)
    ninf = np.float32(-np.inf)
    k = 0
    for i in range(n):
        c = st[i]
        for y in range(b):
            yy = min(max(sr[i] + cells[y], 0), h - 1)
            for x in range(b):
                block[y, x] = maps[yy, min(max(sq[i] + cells[x], 0), w - 1), c]
        # tmp = U @ block, then patch = tmp @ U.T; the innermost loops run along
        # rows (vectorisable), each entry still summed over j in order.
        tmp[:, :] = 0.0
        for y in range(p):
            for j in range(b):
                uyj = u[y, j]
                for x in range(b):
                    tmp[y, x] += uyj * block[j, x]
        patch[:, :] = 0.0
        for y in range(p):
            for j in range(b):
                tyj = tmp[y, j]
                for x in range(p):
                    patch[y, x] += tyj * ut[j, x]
        for y in range(p):
            py = sr[i] * stride + offsets[y]
            for x in range(p):
                px = sq[i] * stride + offsets[x]
                if py < 0 or py >= height or px < 0 or px >= width:
                    patch[y, x] = ninf
        for a in range(lo, hi):
            for bb in range(lo, hi):
                v = patch[a, bb]
                if not v >= threshold:
                    continue
                ok = True
                for dy in range(-1, 2):
                    for dx in range(-1, 2):
                        if patch[a + dy, bb + dx] > v:
                            ok = False
                if not ok:
                    continue
                ys = sr[i] * stride + offsets[a]
                xs = sq[i] * stride + offsets[bb]
                fits = xs >= radius and xs + radius < width and ys >= radius and ys + radius < height
                off_x = 0.0
                off_y = 0.0
                score = np.float64(v)
                if fits:
                    wsum = 0.0
                    mx = 0.0
                    my = 0.0
                    for dy in range(-radius, radius + 1):
                        for dx in range(-radius, radius + 1):
                            val = np.float64(patch[a + dy, bb + dx])
                            wsum += val
                            mx += val * dx
                            my += val * dy
                    score = wsum / ((2 * radius + 1) * (2 * radius + 1))
                    if wsum > 0:
                        off_x = min(max(mx / wsum, -radius), radius)
                        off_y = min(max(my / wsum, -radius), radius)
                o_seed[k], o_y[k], o_x[k] = i, ys, xs
                o_dx[k], o_dy[k], o_s[k] = off_x, off_y, score
                k += 1
    return o_seed[:k], o_y[:k], o_x[:k], o_dx[:k], o_dy[:k], o_s[:k]


def _hungarian(cost, n, m, col):
    """Min-cost assignment of n rows to distinct columns of an (n, m) float64 cost,
    n <= m: the column of each row, written into col. Shortest augmenting paths with
    potentials (Kuhn-Munkres, O(n^2 m)); used on small components only."""
    inf = np.inf
    u = np.zeros(n + 1)
    v = np.zeros(m + 1)
    p = np.zeros(m + 1, np.int64)
    way = np.zeros(m + 1, np.int64)
    minv = np.empty(m + 1)
    used = np.empty(m + 1, np.bool_)
    for i in range(1, n + 1):
        p[0] = i
        j0 = 0
        minv[:] = inf
        used[:] = False
        while True:
            used[j0] = True
            i0, delta, j1 = p[j0], inf, 0
            for j in range(1, m + 1):
                if not used[j]:
                    cur = cost[i0 - 1, j - 1] - u[i0] - v[j]
                    if cur < minv[j]:
                        minv[j] = cur
                        way[j] = j0
                    if minv[j] < delta:
                        delta = minv[j]
                        j1 = j
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
    col[:n] = -1
    for j in range(1, m + 1):
        if p[j]:
            col[p[j] - 1] = j - 1


def _match_components(order, starts, sizes, ka, kb, score, num_keys):
    """Maximum-weight one-to-one matching of each component of the pair graph.

    Component c holds the pairs order[starts[c]:starts[c] + sizes[c]]; pair q
    joins key ka[q] to key kb[q] (keys < num_keys) with weight score[q]. The
    smaller side's keys are the rows (numbered in first-seen order), n zero-cost
    "unmatched" columns are added, and ``_hungarian`` minimises -score. Returns
    the chosen pair indices, component by component, by row."""
    out = np.empty(order.size, np.int64)
    k = 0
    row_of = np.full(num_keys, -1, np.int64)
    col_of = np.full(num_keys, -1, np.int64)
    for c in range(starts.size):
        grp = order[starts[c]:starts[c] + sizes[c]]
        nr = 0
        nc = 0
        for q in grp:   # local ids in first-seen order, like the dicts of the NumPy path
            if row_of[ka[q]] < 0:
                row_of[ka[q]] = nr
                nr += 1
            if col_of[kb[q]] < 0:
                col_of[kb[q]] = nc
                nc += 1
        flip = nr > nc
        n, m = (nc, nr) if flip else (nr, nc)
        cost = np.full((n, m + n), 1e9)
        cost[:, m:] = 0.0
        pair = np.full((n, m), -1, np.int64)
        for q in grp:
            r, cc = row_of[ka[q]], col_of[kb[q]]
            if flip:
                r, cc = cc, r
            cost[r, cc] = -score[q]
            pair[r, cc] = q
        col = np.empty(n, np.int64)
        _hungarian_impl(cost, n, m + n, col)
        for r in range(n):
            if col[r] < m and pair[r, col[r]] >= 0:
                out[k] = pair[r, col[r]]
                k += 1
        for q in grp:
            row_of[ka[q]] = -1
            col_of[kb[q]] = -1
    return out[:k]


# What ``_match_components`` calls: ``_hungarian`` itself, or compiled once
# ``_compiled`` compiles ``_match_components`` (numba needs its callees compiled).
_hungarian_impl = _hungarian


@functools.lru_cache(maxsize=None)
def _compiled(fn):
    global _hungarian_impl
    try:
        import numba
    except Exception as e:  # installed but broken (e.g. built for another NumPy)
        raise RuntimeError(f"numba is installed but does not import ({type(e).__name__}: {e}); "
                           "reinstall it (pip install -e . picks a matching version) or set "
                           "KERAS_POSE_NO_NUMBA=1 to decode without it") from None
    jit = numba.njit(cache=True, nogil=True)
    if fn is _match_components:
        _hungarian_impl = jit(_hungarian)
    return jit(fn)


def score_pairs(*args):
    """Compiled ``_score_pairs``."""
    return _compiled(_score_pairs)(*args)


def seeds(*args):
    """Compiled ``_seeds``."""
    return _compiled(_seeds)(*args)


def patch_peaks(*args):
    """Compiled ``_patch_peaks``."""
    return _compiled(_patch_peaks)(*args)


def match_components(*args, compiled: bool = True):
    """``_match_components``, compiled unless ``compiled`` is False or numba is missing
    (then the same code runs in Python: the only implementation of the matching)."""
    if compiled and AVAILABLE:
        return _compiled(_match_components)(*args)
    return _match_components(*args)
