"""Compiled loops of the bottom-up decoder (``docs/method_bottom_up.md`` §5.3-5.4), via numba.

Shapes: (h, w, T) keypoint maps at stride s, H x W = s*h x s*w input, n seeds,
Q candidate pairs, S <= ``max_limb_samples`` samples per pair.

The NumPy paths of ``_peaks`` and ``_grouping`` spend most of their time in
per-call overhead and gathers; these kernels run the same arithmetic in single
loops. Each kernel's docstring names the NumPy code it replaces; results agree
with it up to float32 summation order (checked in ``tests/test_kernels.py``).

**Limb test** (``limb_test``, replaces ``_grouping._pairs`` and ``_grouping._Segments``).
``_grouping.limb_pairs`` reads the bicubically upsampled limb map at the n
rounded points of every candidate segment and counts the samples above thre2;
crowds of 24 persons need ~10^5 reads and noise ~10^6. The kernel forms the
pairs itself (no per-pair arrays) and does the same arithmetic pair by pair,
and stops reading a pair as soon as its failures exceed what the
``connect_ratio`` test allows (exact: it could not pass). The values are those
of ``CubicSampler`` up to float32 rounding (same taps; the separable weights
wy[r] * wx[c] applied one axis at a time, 20 products instead of 16 but 8 weight
reads instead of 16, ~15% faster; with many pairs, from maps upsampled along x
by cv2 first; multiply-adds fused), the sample points those of ``np.linspace``
(a + s * step, never fused, end point exactly b, rounded half to even).

**Peaks** (``seeds``, ``patch_peaks``, replace ``_peaks._seeds`` and
``_peaks._patch_peaks``, same results): the low-resolution seeds and, per seed,
its bicubic patch (U @ block @ U.T), 3x3 NMS, threshold and 5x5 refinement; for
power-of-two strides the seeds next to a 3x3 maximum share its patch.

**Grouping** (``greedy``, ``components``: the authors' sequential greedy scan,
the pair graph's components by union-find; they replace
``_grouping._greedy_matching``' rounds and ``_assembly._components``' label
propagation). ``match_limbs`` is all of ``_assembly._match_keys`` (confident
pairs, components, exact matchings, greedy rest) in one call, ``match_per_limb``
all of ``_grouping.match_per_limb`` (the authors' choice per limb).

**Exact limb matching and assembly** (``_match_components``: the per-component
maximum-weight matchings of ``_assembly.match_limbs``; ``assemble``: the authors'
sequential person assembly). They have no NumPy twin: without numba the same
code runs in Python.

All indices into the maps are unsigned where it matters: numba then skips its
negative-index wrap-around, about a third of the time of a bicubic read.

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
import types

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


def _linspace_point(s, step, start):
    """``np.linspace``'s point s: s * step + start, rounded twice (never fused into one
    FMA, also when called from ``_limb_test``: the point is then rounded to pixels
    half to even exactly like the authors')."""
    return s * step + start


def _limb_test(xy, cand, starts, counts, limb_from, limb_to, chan, flat, oy, wy, ox, wx, rows,
               min_length, max_samples, ratio, thre2, order, image_height):
    """Limb test of every candidate pair of every limb (§5.4): the passing pairs.

    Args:
        xy: (N, 2) float64 candidates, input pixels, grouped by type; cand: (N,)
            their scores.
        starts, counts: (J,) first candidate and count of each type.
        limb_from, limb_to: (L,) the limbs' end types.
        chan: (L,) uint64 flat offset of each limb's channel in ``flat`` (the
            channel index in the (h, w, C) layout, or index * h * W for rows).
        flat: the float32 maps, raveled: (h, w, C) ``CubicSampler.flat``, or
            ``CubicSampler.rows``.
        oy, wy: (H, 4) uint64 flat offsets and float32 weights of the 4 tap rows
            of each input row; ox, wx: the same for the tap columns of each input
            column. A sample is sum_r wy[r] * (sum_c wx[c] * cell[r, c]).
        rows: ``flat`` is ``CubicSampler.rows`` (upsampled along x already), ``oy``
            its row offsets, and a sample is the 4-tap sum over y alone (``ox``,
            ``wx`` unused).
        min_length: pairs not longer than this are skipped (0: the authors' L == 0).
        max_samples, ratio, thre2: ``max_limb_samples``, ``connect_ratio``, thre2.
        order: ``sample_order`` table.
        image_height: H_img of the length prior.

    Pairs run limb by limb, i-major (the authors' order). A pair of length L has
    n = min(rint(L + 1), max_samples) samples, at most n - ceil(ratio * n) of them
    <= thre2; reading stops once the failures exceed that (it cannot pass). A
    pair that passes has S = (sum of its values) / n + min(0.5 H_img / L - 1, 0)
    and is kept if S > 0 (``_grouping._passing``' arithmetic). Returns (limb,
    ia, ib, S, length, key) of the kept pairs, key = 0.5 S + 0.25 (cand[ia] +
    cand[ib]) summed in that order.
    """
    q_max = 0
    for k in range(limb_from.size):
        q_max += counts[limb_from[k]] * counts[limb_to[k]]
    o_limb = np.empty(q_max, np.int64)
    o_a = np.empty(q_max, np.int64)
    o_b = np.empty(q_max, np.int64)
    o_s = np.empty(q_max, np.float64)
    o_len = np.empty(q_max, np.float64)
    o_key = np.empty(q_max, np.float64)
    k_out = 0
    for k in range(limb_from.size):
        ch = chan[k]
        fr, to = limb_from[k], limb_to[k]
        for ia in range(starts[fr], starts[fr] + counts[fr]):
            ax, ay = xy[ia, 0], xy[ia, 1]
            for ib in range(starts[to], starts[to] + counts[to]):
                bx, by = xy[ib, 0], xy[ib, 1]
                ddx, ddy = bx - ax, by - ay
                length = np.sqrt(ddx * ddx + ddy * ddy)
                if not length > min_length:
                    continue
                nq = np.int64(min(np.rint(length + 1.0), max_samples))
                allowed = nq - np.int64(np.ceil(ratio * nq))
                div = max(nq - 1, 1)
                dx = ddx / div
                dy = ddy / div
                f = 0
                t = 0.0
                for j in range(nq):
                    s = order[nq, j]
                    if s == nq - 1 and nq > 1:
                        x, y = bx, by
                    else:
                        x = _linspace_point(s, dx, ax)
                        y = _linspace_point(s, dy, ay)
                    # via int64: a float -> uint64 conversion is a slow instruction sequence
                    xi = np.uint64(np.int64(np.rint(x)))
                    yi = np.uint64(np.int64(np.rint(y)))
                    if rows:
                        v = flat[oy[yi, 0] + ch + xi] * wy[yi, 0]
                        v += flat[oy[yi, 1] + ch + xi] * wy[yi, 1]
                        v += flat[oy[yi, 2] + ch + xi] * wy[yi, 2]
                        v += flat[oy[yi, 3] + ch + xi] * wy[yi, 3]
                    else:   # separable: 4 weighted tap columns per tap row, then the rows
                        c0, c1, c2, c3 = ox[xi, 0], ox[xi, 1], ox[xi, 2], ox[xi, 3]
                        u0, u1, u2, u3 = wx[xi, 0], wx[xi, 1], wx[xi, 2], wx[xi, 3]
                        v = np.float32(0.0)
                        for a in range(4):
                            r = oy[yi, a] + ch
                            v += wy[yi, a] * ((flat[r + c0] * u0 + flat[r + c1] * u1)
                                              + (flat[r + c2] * u2 + flat[r + c3] * u3))
                    # counted without a branch; the pair is dropped once it cannot pass
                    f += v <= thre2
                    t += v
                    if j >= allowed and f > allowed:
                        break
                if f > allowed:
                    continue
                score = t / nq + min(0.5 * image_height / length - 1.0, 0.0)
                if not score > 0:
                    continue
                o_limb[k_out], o_a[k_out], o_b[k_out] = k, ia, ib
                o_s[k_out], o_len[k_out] = score, length
                o_key[k_out] = 0.5 * score + 0.25 * cand[ia] + 0.25 * cand[ib]
                k_out += 1
    return (o_limb[:k_out], o_a[:k_out], o_b[:k_out], o_s[:k_out], o_len[:k_out],
            o_key[:k_out])


def _seeds(maps, low, near_top):
    """``_peaks._seeds`` in one pass: (rows, cols, types, primary, values, above) of
    the seeds, in flat (row, col, type) order, above = the number of cells >= low. A
    seed is >= low and >= its in-map 8 neighbours (primary), or a 1-D maximum along
    its row or column within near_top of their maximum (out-of-map neighbours never
    win). A first pass counts the cells >= low (room for every seed); the test itself
    is branch-free."""
    h, w, t = maps.shape
    cap = 0
    for r in range(h):
        for q in range(w):
            for c in range(t):
                cap += maps[r, q, c] >= low
    sr = np.empty(cap, np.int64)
    sq = np.empty(cap, np.int64)
    st = np.empty(cap, np.int64)
    primary = np.empty(cap, np.bool_)
    val = np.empty(cap, np.float32)
    ninf = np.float32(-np.inf)
    one = np.uint64(1)
    k = 0
    for r0 in range(h):
        r = np.uint64(r0)
        for q0 in range(w):
            q = np.uint64(q0)
            inner = 0 < r0 < h - 1 and 0 < q0 < w - 1
            for c0 in range(t):
                c = np.uint64(c0)
                v = maps[r, q, c]
                if not v >= low:
                    continue
                if inner:
                    left, right = maps[r, q - one, c], maps[r, q + one, c]
                    up, down = maps[r - one, q, c], maps[r + one, q, c]
                    diag = max(max(maps[r - one, q - one, c], maps[r - one, q + one, c]),
                               max(maps[r + one, q - one, c], maps[r + one, q + one, c]))
                else:   # border cell
                    left = maps[r, q - one, c] if q0 > 0 else ninf
                    right = maps[r, q + one, c] if q0 < w - 1 else ninf
                    up = maps[r - one, q, c] if r0 > 0 else ninf
                    down = maps[r + one, q, c] if r0 < h - 1 else ninf
                    diag = ninf
                    for dy in (-1, 1):
                        if 0 <= r0 + dy < h:
                            for dx in (-1, 1):
                                if 0 <= q0 + dx < w:
                                    diag = max(diag, maps[r0 + dy, q0 + dx, c0])
                top = max(max(max(left, right), max(up, down)), diag)
                is_primary = v >= top
                # written always, kept (k advanced) only for a seed
                keep = is_primary | ((((v >= left) & (v >= right)) | ((v >= up) & (v >= down)))
                                     & (v >= near_top * top))
                sr[k], sq[k], st[k], primary[k], val[k] = r0, q0, c0, is_primary, v
                k += np.int64(keep)
    return sr[:k], sq[:k], st[:k], primary[:k], val[:k], cap


def _patch_peaks(maps, sr, sq, st, primary, u, cells, offsets, base, p1, stride, threshold,
                 radius, share):
    """Patch step of ``_peaks.find_peaks``: for every seed its bicubic patch (pixels
    outside the input are -inf), the 3x3 maxima >= threshold of its search region,
    and their refinement (§5.3, x/y correct), like ``_peaks._patch_peaks``.

    u, cells, offsets are the reach-2 operator (``_peaks.patch_operator(s, r, 2)``);
    a seed d cells below / right of a patch's leader has its own (reach-1, p1
    pixels) patch at rows / columns base + s * d .. + p1 of it. With ``share``, a
    seed that is not a 3x3 maximum joins the first 3x3 maximum of its type among
    its 8 neighbours (row-major), if any, and the group computes one patch (the
    bounding box of its members') and searches its members' regions, each pixel
    once: the same maxima as one patch per seed, with a quarter less work in
    crowds. A pixel's value is then the same as in its own seed's patch where the
    tap weights depend only on the pixel's phase exactly, i.e. for power-of-two
    strides (the caller's condition). Without ``share`` every seed is alone.

    Returns (seed (N,), ys (N,), xs (N,) int64 pixels, off_x, off_y, score (N,)
    float64): maxima by group (seed order), row-major within a seed's region; a
    pixel found from two groups appears twice; seed = the group's leader. score =
    window mean where the (2r+1)^2 window fits inside the input, else the peak
    value. Each row of u holds the 4 bicubic taps in consecutive columns; the
    products skip its zeros (the same sums: adding an exact zero changes nothing).
    """
    h, w, t = maps.shape
    height, width = h * stride, w * stride
    n = sr.size
    # --- groups: leader of every seed, then members grouped by leader
    key = (sr * w + sq) * t + st
    pidx = np.flatnonzero(primary)
    porder = np.argsort(key[pidx])
    pkey = key[pidx][porder]
    pidx = pidx[porder]
    lead = np.arange(n)
    for i in range(n):
        if primary[i] or not share:
            continue
        found = False
        for dy in range(-1, 2):
            for dx in range(-1, 2):
                if found or (dy == 0 and dx == 0) or not 0 <= sq[i] + dx < w:
                    continue
                nk = ((sr[i] + dy) * w + sq[i] + dx) * t + st[i]
                j = np.searchsorted(pkey, nk)
                if j < pkey.size and pkey[j] == nk:
                    lead[i] = pidx[j]
                    found = True
    members, ptr = _counting_sort(lead, n)    # group g: members[ptr[g]:ptr[g + 1]]
    # --- one patch per group
    p, b = u.shape
    cap = n * (p1 - 2 * radius) * (p1 - 2 * radius)
    o_seed = np.empty(cap, np.int64)
    o_y = np.empty(cap, np.int64)
    o_x = np.empty(cap, np.int64)
    o_dx = np.empty(cap, np.float64)
    o_dy = np.empty(cap, np.float64)
    o_s = np.empty(cap, np.float64)
    first = np.empty(p, np.uint64)           # column of each row's first tap
    for y in range(p):
        j = 0
        while u[y, j] == 0.0 and j < b - 4:
            j += 1
        first[y] = j
    block = np.empty((b, b), np.float32)
    tmp = np.empty((p, b), np.float32)
    patch = np.empty((p, p), np.float32)
    seen = np.zeros((p, p), np.bool_)
    ninf = np.float32(-np.inf)
    k = 0
    for g in range(n):
        if ptr[g + 1] == ptr[g]:
            continue
        r0, q0, c = sr[g], sq[g], np.uint64(st[g])
        y_lo, y_hi, x_lo, x_hi = p, 0, p, 0
        for e in range(ptr[g], ptr[g + 1]):
            m = members[e]
            oy = base + stride * (sr[m] - r0)
            ox = base + stride * (sq[m] - q0)
            y_lo, y_hi = min(y_lo, oy), max(y_hi, oy + p1)
            x_lo, x_hi = min(x_lo, ox), max(x_hi, ox + p1)
        for y in range(b):
            yy = np.uint64(min(max(r0 + cells[y], 0), h - 1))
            for x in range(b):
                block[y, x] = maps[yy, np.uint64(min(max(q0 + cells[x], 0), w - 1)), c]
        for y0 in range(y_lo, y_hi):
            y = np.uint64(y0)
            j0 = first[y]
            for x in range(b):
                acc = np.float32(0.0)
                for tt in range(4):
                    acc += u[y, j0 + tt] * block[j0 + tt, x]
                tmp[y, x] = acc
        y_org = r0 * stride + offsets[0]
        x_org = q0 * stride + offsets[0]
        for y0 in range(y_lo, y_hi):
            y = np.uint64(y0)
            py = y_org + y0
            for x0 in range(x_lo, x_hi):
                x = np.uint64(x0)
                j0 = first[x]
                acc = np.float32(0.0)
                for tt in range(4):
                    acc += tmp[y, j0 + tt] * u[x, j0 + tt]
                px = x_org + x0
                if py < 0 or py >= height or px < 0 or px >= width:
                    acc = ninf
                patch[y, x] = acc
                seen[y, x] = False
        for e in range(ptr[g], ptr[g + 1]):
            m = members[e]
            oy = base + stride * (sr[m] - r0)
            ox = base + stride * (sq[m] - q0)
            for a0 in range(oy + radius, oy + p1 - radius):
                a = np.uint64(a0)
                for b0 in range(ox + radius, ox + p1 - radius):
                    bb = np.uint64(b0)
                    if seen[a, bb]:
                        continue
                    seen[a, bb] = True
                    v = patch[a, bb]
                    if not v >= threshold:
                        continue
                    one = np.uint64(1)
                    if (patch[a - one, bb - one] > v or patch[a - one, bb] > v
                            or patch[a - one, bb + one] > v or patch[a, bb - one] > v
                            or patch[a, bb + one] > v or patch[a + one, bb - one] > v
                            or patch[a + one, bb] > v or patch[a + one, bb + one] > v):
                        continue
                    ys = y_org + a0
                    xs = x_org + b0
                    fits = (xs >= radius and xs + radius < width and ys >= radius
                            and ys + radius < height)
                    off_x = 0.0
                    off_y = 0.0
                    score = np.float64(v)
                    if fits:
                        wsum = 0.0
                        mx = 0.0
                        my = 0.0
                        for dy in range(-radius, radius + 1):
                            for dx in range(-radius, radius + 1):
                                val = np.float64(patch[np.uint64(a0 + dy), np.uint64(b0 + dx)])
                                wsum += val
                                mx += val * dx
                                my += val * dy
                        score = wsum / ((2 * radius + 1) * (2 * radius + 1))
                        if wsum > 0:
                            off_x = min(max(mx / wsum, -radius), radius)
                            off_y = min(max(my / wsum, -radius), radius)
                    o_seed[k], o_y[k], o_x[k] = g, ys, xs
                    o_dx[k], o_dy[k], o_s[k] = off_x, off_y, score
                    k += 1
    return o_seed[:k], o_y[:k], o_x[:k], o_dx[:k], o_dy[:k], o_s[:k]


def _greedy(key_a, key_b, num_keys):
    """Rows accepted by the sequential greedy one-to-one choice (§5.4): scanning the
    rows in order, row q is taken iff neither key_a[q] nor key_b[q] was taken
    before. Returns the accepted row indices, ascending (``_grouping._greedy_matching``
    computes the same in vectorised rounds)."""
    taken_a = np.zeros(num_keys, np.bool_)
    taken_b = np.zeros(num_keys, np.bool_)
    out = np.empty(key_a.size, np.int64)
    k = 0
    for q in range(key_a.size):
        a, b = key_a[q], key_b[q]
        if not taken_a[a] and not taken_b[b]:
            taken_a[a] = True
            taken_b[b] = True
            out[k] = q
            k += 1
    return out[:k]


def _assemble(ida, idb, sc, length, limb_ptr, special, limb_from, limb_to, cand, num_types,
              len_rate, tole, fix_tb, ids, attach, total, parts, longest, owner):
    """The authors' sequential greedy assembly over accepted connections (§5.5),
    quirks kept (see ``_grouping.assemble``); ``assemble`` prepares and reads back.

    Args:
        ida, idb, sc, length: (R,) accepted connections, limb by limb (limb k's
            rows are limb_ptr[k]:limb_ptr[k + 1]) in acceptance order: candidate
            ids, limb score S and length.
        special: (L,) a limb skipped in grouping (a candidate set was empty).
        limb_from, limb_to: (L,) the limbs' end types.
        cand: (N,) candidate scores; num_types: J.
        len_rate, tole: ``length_rate``, ``connection_tolerance``.
        fix_tb: a person found through its tB slot also takes idA when its tA
            slot is empty (keras_pose's fix of the first quirk).
        ids, attach: (max(R, 1) * J,) filled with -1: person p's slot t at p * J + t
            (candidate id, attach score); total, parts, longest: (max(R, 1),) zeros;
            owner: (N,) -1 (candidate -> the person holding it). Written in place.

    Returns the number of persons, in creation order (the authors' subset order);
    a person merged into another has parts 0. Only indexing and scalar
    arithmetic: compiled, the arguments are arrays; in Python, lists (much faster
    to index there). A candidate occupies at most one person's slot of its type,
    so the owner table replaces the authors' scan over all persons.
    """
    nt = num_types
    created = 0
    for k in range(len(limb_from)):
        if special[k]:
            continue
        ta, tb = limb_from[k], limb_to[k]
        for r in range(limb_ptr[k], limb_ptr[k + 1]):
            a, b, s, ln = ida[r], idb[r], sc[r], length[r]
            pa, pb = owner[a], owner[b]
            # only the person holding idA in its tA slot (or idB in tB) matches
            if pa >= 0 and ids[pa * nt + ta] != a:
                pa = -1
            if pb >= 0 and ids[pb * nt + tb] != b:
                pb = -1
            if pa < 0 and pb < 0:
                p = created
                created += 1
                ids[p * nt + ta], attach[p * nt + ta] = a, s
                ids[p * nt + tb], attach[p * nt + tb] = b, s
                parts[p], longest[p] = 2, ln
                total[p] = cand[a] + cand[b] + s
                owner[a] = p
                owner[b] = p
                continue
            if pa < 0 or pb < 0 or pa == pb:
                j = pa if pa >= 0 else pb
                ja, jb = j * nt + ta, j * nt + tb
                if fix_tb and pa < 0 and ids[ja] == -1 and len_rate * longest[j] > ln:
                    ids[ja], attach[ja] = a, s
                    parts[j] += 1
                    total[j] += cand[a] + s
                    longest[j] = max(longest[j], ln)
                    owner[a] = j
                    continue
                old = ids[jb]
                if old == -1 and len_rate * longest[j] > ln:
                    ids[jb], attach[jb] = b, s
                    parts[j] += 1
                    total[j] += cand[b] + s
                    longest[j] = max(longest[j], ln)
                    owner[b] = j
                elif old != b:
                    # an empty slot lands here only when the length check failed
                    # above (its attach score -1 < s), so it is skipped here too
                    if attach[jb] >= s or len_rate * longest[j] <= ln:
                        continue
                    total[j] -= cand[old] + attach[jb]
                    owner[old] = -1
                    ids[jb], attach[jb] = b, s
                    total[j] += cand[b] + s
                    longest[j] = max(longest[j], ln)
                    owner[b] = j
                elif attach[jb] <= s:
                    total[j] += s - attach[jb]
                    attach[jb] = s
                    longest[j] = max(longest[j], ln)
                continue
            # found == 2, in creation order
            j1, j2 = min(pa, pb), max(pa, pb)
            overlap = False
            m1 = np.inf
            m2 = np.inf
            for t in range(nt):
                if ids[j1 * nt + t] > -1:
                    m1 = min(m1, attach[j1 * nt + t])
                    if ids[j2 * nt + t] > -1:
                        overlap = True
                if ids[j2 * nt + t] > -1:
                    m2 = min(m2, attach[j2 * nt + t])
            if overlap:
                continue   # conflict: a no-op with remove_recon = 0
            if s < tole * min(m1, m2) or len_rate * longest[j1] <= ln:
                continue
            for t in range(nt):
                if ids[j2 * nt + t] > -1:
                    ids[j1 * nt + t], attach[j1 * nt + t] = ids[j2 * nt + t], attach[j2 * nt + t]
                    owner[ids[j2 * nt + t]] = j1
            parts[j1] += parts[j2]
            total[j1] += total[j2] + s
            longest[j1] = max(longest[j1], ln)
            parts[j2] = 0   # dead: merged into j1
    return created


def _components(ea, eb, n):
    """(Q,) component of each edge ea[q] - eb[q] of a graph on n nodes, labelled by
    its smallest node (``_assembly._components``' labels): union-find, the smaller
    root always kept as the root."""
    parent = np.arange(n)
    for q in range(ea.size):
        a, b = ea[q], eb[q]
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        while parent[b] != b:
            parent[b] = parent[parent[b]]
            b = parent[b]
        if a < b:
            parent[b] = a
        elif b < a:
            parent[a] = b
    out = np.empty(ea.size, np.int64)
    for q in range(ea.size):
        a = ea[q]
        while parent[a] != a:
            a = parent[a]
        out[q] = a
    return out


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
        _hungarian(cost, n, m + n, col)
        for r in range(n):
            if col[r] < m and pair[r, col[r]] >= 0:
                out[k] = pair[r, col[r]]
                k += 1
        for q in grp:
            row_of[ka[q]] = -1
            col_of[kb[q]] = -1
    return out[:k]


def _match_per_limb(limb, ia, ib, key, num_limbs, num_candidates):
    """``_grouping.match_per_limb`` in one call: within each limb (rows sorted by
    limb) the rows by descending key (stable), then the authors' greedy scan. Returns
    the accepted row indices, limb-major, by descending key within a limb."""
    order = np.empty(limb.size, np.int64)
    lo = 0
    for k in range(num_limbs):
        hi = lo
        while hi < limb.size and limb[hi] == k:
            hi += 1
        order[lo:hi] = lo + _order_desc(key[lo:hi])
        lo = hi
    lk = limb[order] * num_candidates
    return order[_greedy(lk + ia[order], lk + ib[order], num_limbs * num_candidates)]


def _counting_sort(labels, num_labels):
    """Stable sort of labels in 0..num_labels-1: (order (n,), ptr (num_labels + 1,)),
    label c's items at order[ptr[c]:ptr[c + 1]], in index order."""
    ptr = np.zeros(num_labels + 1, np.int64)
    for c in labels:
        ptr[c + 1] += 1
    ptr = np.cumsum(ptr)
    fill = ptr[:-1].copy()
    order = np.empty(labels.size, np.int64)
    for q in range(labels.size):
        order[fill[labels[q]]] = q
        fill[labels[q]] += 1
    return order, ptr


def _dense_keys(limb, cand, num_limbs, num_candidates, first):
    """Numbers first, first + 1, ... for the (limb, cand) keys that occur, in key
    order (``np.unique``'s numbering, in O(Q + L N) without a sort). Returns (keys (Q,),
    the next free number)."""
    order, ptr = _counting_sort(limb, num_limbs)
    number = np.full(num_candidates, -1, np.int64)
    out = np.empty(limb.size, np.int64)
    nxt = first
    for k in range(num_limbs):
        for e in range(ptr[k], ptr[k + 1]):
            number[cand[order[e]]] = -2        # occurs in limb k
        for c in range(num_candidates):
            if number[c] == -2:
                number[c] = nxt
                nxt += 1
        for e in range(ptr[k], ptr[k + 1]):
            out[order[e]] = number[cand[order[e]]]
        for e in range(ptr[k], ptr[k + 1]):
            number[cand[order[e]]] = -1
    return out, nxt


def _order_desc(w):
    """``_grouping.order_desc``: indices sorting w descending, ties in index order; the
    faster unstable sort where w has no ties (then both orders are the same)."""
    o = np.argsort(-w)
    for i in range(1, o.size):
        if w[o[i]] == w[o[i - 1]]:
            return np.argsort(-w, kind="mergesort")
    return o


def _match_limbs(limb, ia, ib, w, num_limbs, num_candidates, exact_max, rel, floor, card_bonus,
                 greedy_bonus):
    """``_assembly.match_limbs`` below its greedy-only size, in one compiled call (the
    same rows in the same order): pairs (limb, ia) - (limb, ib) of weight w; with
    rel / floor, the exact matching of the confident pairs and the rest greedily;
    else ``_exact_matching`` of all."""
    ka, nxt = _dense_keys(limb, ia, num_limbs, num_candidates, 0)
    kb, num_keys = _dense_keys(limb, ib, num_limbs, num_candidates, nxt)
    if rel > 0 or floor > -np.inf:
        best = np.zeros(num_keys)
        for q in range(ka.size):
            best[ka[q]] = max(best[ka[q]], w[q])
        for q in range(ka.size):
            best[kb[q]] = max(best[kb[q]], w[q])
        strong = np.empty(ka.size, np.bool_)
        for q in range(ka.size):
            strong[q] = w[q] >= rel * best[ka[q]] and w[q] >= rel * best[kb[q]] and w[q] >= floor
        if not strong.all():
            sq = np.flatnonzero(strong)
            rows = sq[_exact_matching(ka[sq], kb[sq], w[sq], num_keys, exact_max, card_bonus,
                                      greedy_bonus)]
            used_a = np.zeros(num_keys, np.bool_)
            used_b = np.zeros(num_keys, np.bool_)
            for q in rows:
                used_a[ka[q]] = True
                used_b[kb[q]] = True
            rest = np.empty(ka.size, np.int64)
            k = 0
            for q in range(ka.size):
                if not strong[q] and not used_a[ka[q]] and not used_b[kb[q]]:
                    rest[k] = q
                    k += 1
            rest = rest[:k]
            o = rest[_order_desc(w[rest])]
            return np.concatenate((rows, o[_greedy(ka[o], kb[o], num_keys)]))
    return _exact_matching(ka, kb, w, num_keys, exact_max, card_bonus, greedy_bonus)


def _exact_matching(ka, kb, w, num_keys, exact_max, card_bonus, greedy_bonus):
    """The exact part of ``_assembly._match_keys``: components of the pair graph in
    label order (members in row order); single pairs taken, components up to
    exact_max pairs matched by ``_match_components`` on card_bonus + greedy_bonus *
    (chosen by the greedy) + w, larger ones by the greedy. Returns the rows:
    single pairs, matched ones, the large components' ones."""
    comp = _components(ka, kb, num_keys)
    order, ptr = _counting_sort(comp, num_keys)
    nonempty = np.flatnonzero(ptr[1:] > ptr[:-1])
    starts = ptr[nonempty]
    sizes = ptr[nonempty + 1] - starts
    o = _order_desc(w)
    greedy = np.zeros(w.size)
    greedy[o[_greedy(ka[o], kb[o], num_keys)]] = 1.0
    score = card_bonus + greedy_bonus * greedy + w
    small = (sizes > 1) & (sizes <= exact_max)
    matched = _match_components(order, starts[small], sizes[small], ka, kb, score, num_keys)
    big = sizes > exact_max
    grp = np.empty(comp.size, np.int64)
    k = 0
    for c in np.flatnonzero(big):
        for e in range(starts[c], starts[c] + sizes[c]):
            grp[k] = order[e]
            k += 1
    grp = grp[:k]
    o = grp[_order_desc(w[grp])]
    return np.concatenate((order[starts[sizes == 1]], matched, o[_greedy(ka[o], kb[o], num_keys)]))


# Kernels that call other kernels: numba compiles the callees first and the caller
# sees their compiled versions (``_compiled``).
_KERNELS = {}
# Kernels whose multiply-adds may fuse (FMA; values change in the last float32 bit):
# the limb test runs ~15% faster.
_FUSED = (_limb_test,)


@functools.lru_cache(maxsize=None)
def _compiled(fn):
    """``fn`` compiled by numba (cached on disk); the kernels it calls by name are
    replaced by their compiled versions in its globals."""
    try:
        import numba
    except Exception as e:  # installed but broken (e.g. built for another NumPy)
        raise RuntimeError(f"numba is installed but does not import ({type(e).__name__}: {e}); "
                           "reinstall it (pip install -e . picks a matching version) or set "
                           "KERAS_POSE_NO_NUMBA=1 to decode without it") from None
    env = dict(fn.__globals__)
    for name in fn.__code__.co_names:
        if name in _KERNELS and _KERNELS[name] is not fn:
            env[name] = _compiled(_KERNELS[name])
    clone = types.FunctionType(fn.__code__, env, fn.__name__, fn.__defaults__, fn.__closure__)
    clone.__qualname__, clone.__module__ = fn.__qualname__, fn.__module__
    fastmath = {"contract"} if fn in _FUSED else False
    return numba.njit(cache=True, nogil=True, fastmath=fastmath)(clone)


def _twin(fn):
    """The public name of kernel ``fn``: compiles it on the first call, then runs it."""
    def call(*args):
        return _compiled(fn)(*args)
    call.__name__ = fn.__name__.lstrip("_")
    call.__doc__ = f"Compiled ``{fn.__name__}``."
    return call


_KERNELS.update((f.__name__, f) for f in (
    _linspace_point, _limb_test, _seeds, _patch_peaks, _counting_sort, _greedy, _components,
    _hungarian, _match_components, _exact_matching, _dense_keys, _order_desc, _match_limbs,
    _match_per_limb, _assemble))
limb_test, seeds, patch_peaks, greedy, components, match_limbs, match_per_limb = map(
    _twin, (_limb_test, _seeds, _patch_peaks, _greedy, _components, _match_limbs, _match_per_limb))


def assemble(ida, idb, sc, length, limb_ptr, special, limb_from, limb_to, cand, num_types,
             len_rate, tole, fix_tb, compiled: bool = True):
    """``_assemble`` (compiled unless ``compiled`` is False or numba is missing; then
    the same code runs in Python, on lists) -> (ids (P, J) int64, -1 empty; attach
    (P, J) float64; total, parts, longest (P,)), persons in creation order."""
    size = max(ida.size, 1)
    args = (ida, idb, sc, length, limb_ptr, special, limb_from, limb_to, cand)
    if compiled and AVAILABLE:
        store = (np.full(size * num_types, -1, np.int64), np.full(size * num_types, -1.0),
                 np.zeros(size), np.zeros(size, np.int64), np.zeros(size),
                 np.full(cand.size, -1, np.int64))
        created = _compiled(_assemble)(*args, num_types, len_rate, tole, fix_tb, *store)
    else:
        store = ([-1] * (size * num_types), [-1.0] * (size * num_types), [0.0] * size,
                 [0] * size, [0.0] * size, [-1] * cand.size)
        created = _assemble(*(a.tolist() for a in args), num_types, len_rate, tole, fix_tb, *store)
    ids, attach, total, parts, longest = store[:5]
    slots = created * num_types
    return (np.asarray(ids[:slots], np.int64).reshape(created, num_types),
            np.asarray(attach[:slots], np.float64).reshape(created, num_types),
            np.asarray(total[:created], np.float64), np.asarray(parts[:created], np.int64),
            np.asarray(longest[:created], np.float64))


# ``_assembly``'s path without numba runs the exact matchings as Python; compiled, they
# run inside ``match_limbs``.
match_components = _match_components
