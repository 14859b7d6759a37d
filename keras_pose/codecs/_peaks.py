"""Keypoint peaks at input resolution, computed from stride-s maps without upsampling them.

Shapes: T keypoint types (the spec's J map points; COCO: 18), an h x w map at stride s, an
H x W = s*h x s*w input, N peaks.

The authors (``docs/method_bottom_up.md`` §5.2 step 7, §5.3) upsample the stride-4 maps x4
with OpenCV's bicubic resize (half-pixel centres: input pixel X reads the map at
cell coordinate (X + 0.5)/s - 0.5, i.e. (X - 1.5)/4), then run a 3x3 NMS with
reflect padding, threshold ``thre1`` and a 5x5 score-weighted refinement on the
full-resolution maps. We get the same numbers far more cheaply:

* ``CubicSampler`` evaluates that bicubic upsampling *exactly* (OpenCV's kernel,
  a = -0.75, taps clamped at the border like ``cv2.resize``) at any integer
  input pixel: a full-resolution pixel is a fixed 4x4-cell weighted sum, so
  sampling a pixel costs 16 reads instead of a full-map resize. Many samples go
  through one ``cv2.remap`` over the channels stacked vertically (same kernel,
  replicated border; for power-of-two strides the half-pixel grid lies exactly
  on its 1/32 coordinate grid), few through NumPy tap tables.
* Peaks: the top of a blob in the upsampled map lies within one cell of a
  3x3 maximum of its stride-s samples, and bicubic overshoot is bounded, so we
  seed at low-resolution 3x3 maxima above ``thre1 / overshoot``, plus cells that
  are a 1-D maximum along a row or column within 90% of their 3x3 maximum (the
  weaker top where two same-type blobs overlap: keypoint maps are max-combined,
  and the crease hides that top from a 3x3 test at stride s). Around each seed
  we upsample only a small patch (one batched matrix product) and run NMS,
  thresholding and refinement there exactly as on the full map (pixels outside
  the input count as -inf, which equals reflect padding for a 3x3 max).
  Duplicates from overlapping patches are removed.
* What this can miss: a full-resolution maximum with no seed within one cell.
  On clean (encoder) maps, including 24-person crowds, we find exactly the
  reference's peaks (``tests/test_bp_decode.py``, ``benchmarks/grouping.py``).
  On noisy maps the reference also finds weak bicubic ringing maxima on blob
  flanks, just above ``thre1``; we skip most of those (measured: every keypoint
  we output is the reference's, and >= 90% of its keypoints are ours). And as
  between any two float implementations, two neighbouring pixels equal to
  within 1e-7 can tie here and not in cv2 (or the reverse), which adds or drops
  one plateau peak a pixel away from its twin (seen once in 60 crowded scenes).
* Cap: at most ``max_candidates`` peaks per type, highest refined scores kept;
  to bound the patch work first, at most 2 * ``max_candidates`` seeds per type
  (3x3 maxima first, strongest first).
* Refinement uses the correct x/y orientation (the authors' ``refine_centroid``
  swaps the row and column offsets; §5.3 and §9.1 say to fix it in production).
* With numba installed the seeds and the patch step run as compiled loops
  (``_kernels.seeds``, ``_kernels.patch_peaks``): the same arithmetic, summed in
  another order, so plateau ties (above) can break the other way. For
  power-of-two strides a seed next to a 3x3 maximum of its type shares that
  maximum's patch (the same maxima, less work).

Imports without TensorFlow.
"""
from __future__ import annotations

import functools

import cv2
import numpy as np

from keras_pose.codecs import _kernels

# The compiled seeds and patch step (``_kernels``) where numba is installed, else NumPy.
USE_KERNELS = _kernels.AVAILABLE

CUBIC_A = -0.75  # OpenCV's INTER_CUBIC kernel parameter
# cv2.remap needs the channels as one stacked copy (~0.3 ms for 30 channels at
# 128 x 128) but costs ~7x less per sample than 16 NumPy gathers; it pays from
# about this many samples in one call.
REMAP_MIN_SAMPLES = 2000


def cubic_weights(frac) -> np.ndarray:
    """(N,) fractional offsets in [0, 1) -> (N, 4) tap weights for cells sx-1 .. sx+2."""
    x = np.asarray(frac, np.float64)
    a = CUBIC_A
    w0 = ((a * (x + 1) - 5 * a) * (x + 1) + 8 * a) * (x + 1) - 4 * a
    w1 = ((a + 2) * x - (a + 3)) * x * x + 1
    w2 = ((a + 2) * (1 - x) - (a + 3)) * (1 - x) * (1 - x) + 1
    return np.stack([w0, w1, w2, 1.0 - w0 - w1 - w2], axis=-1)


@functools.lru_cache(maxsize=64)
def axis_taps(size: int, stride: int) -> tuple:
    """Tap table of one axis: full-res pixel X -> (4 clamped cell indices, 4 weights).

    Returns (idx (size*stride, 4) int64, w (size*stride, 4) float32). Pixel X
    reads cell coordinate f = (X + 0.5)/stride - 0.5 (half-pixel centres, so
    X = s*q + s/2 - 0.5 sits exactly on cell q, matching the encoder's §2.3 grid).
    """
    x = np.arange(size * stride, dtype=np.float64)
    f = (x + 0.5) / stride - 0.5
    sx = np.floor(f)
    idx = np.clip(sx[:, None].astype(np.int64) + np.arange(-1, 3), 0, size - 1)
    return idx, cubic_weights(f - sx).astype(np.float32)


@functools.lru_cache(maxsize=16)
def patch_operator(stride: int, radius: int, reach: int = 1) -> tuple:
    """The fixed upsampling operator of a peak patch around one seed cell.

    Around seed cell q, full-res pixels s*q + d for d in ``offsets`` are the
    "core" (cell coordinate within ``reach`` of q: a blob top lies within 1 cell
    of its seed) widened by 1 (NMS neighbours) and by ``radius`` (refinement
    window).
    Returns (offsets (P,), cells (B,) relative cell indices, U (P, B) float32)
    with patch = U @ block @ U.T for block = map[q + cells][:, q + cells].
    """
    # pixels d with |(d + 0.5)/s - 0.5| < reach
    core_lo = int(np.floor(stride * (0.5 - reach) - 0.5)) + 1
    core_hi = int(np.ceil(stride * (0.5 + reach) - 0.5)) - 1
    offsets = np.arange(core_lo - 1 - radius, core_hi + 2 + radius)
    f = (offsets + 0.5) / stride - 0.5
    sx = np.floor(f).astype(np.int64)
    w = cubic_weights(f - sx)
    cells = np.arange(sx.min() - 1, sx.max() + 3)
    u = np.zeros((offsets.size, cells.size), np.float64)
    for t in range(4):  # 4 taps: tiny constant-size loop
        u[np.arange(offsets.size), sx - 1 + t - cells[0]] += w[:, t]
    return offsets, cells, u.astype(np.float32)


@functools.lru_cache(maxsize=16)
def overshoot(stride: int) -> float:
    """Upper bound of (bicubic value) / (max of the non-negative cells it reads).

    The 2-D weights are products wy*wx; the positive ones sum to at most
    Py*Px + Ny*Nx over the stride's phases, so a full-res peak >= thre1 has a
    cell >= thre1 / overshoot nearby. Seeding at that lower level loses no peak.
    """
    _, w = axis_taps(1, stride)
    pos = np.clip(w, 0, None).sum(1)
    neg = -np.clip(w, None, 0).sum(1)
    return float(max(py * px + ny * nx for py, ny in zip(pos, neg) for px, nx in zip(pos, neg)))


@functools.lru_cache(maxsize=16)
def _sampler_tables(h: int, w: int, c: int, stride: int) -> tuple:
    """``CubicSampler``'s tap tables for (h, w, C) maps at stride s (shared, never written).

    Returns (iy (H, 4) int32 tap rows, wy (H, 4) float32, wx (W, 4) float32, oy (H, 4)
    int32, ox (W, 4) int32, w2 (s*s, 16) float32, oy64, ox64 (uint64 copies of oy, ox
    for the compiled kernels)). oy, ox are the flat offsets of the 4 tap rows /
    columns in the (h, w, C) layout (int32: half the memory traffic of int64 in the
    gathers). The weights depend only on the pixel's phase (X mod s): w2 holds the 2-D
    weights wy (x) wx per phase, instead of two per-sample products.
    """
    iy, wy = axis_taps(h, stride)
    ix, wx = axis_taps(w, stride)
    iy, ix = iy.astype(np.int32), ix.astype(np.int32)
    oy, ox = iy * (w * c), ix * c
    w2 = (wy[:stride, None, :, None] * wx[None, :stride, None, :]).reshape(stride * stride, 16)
    return iy, wy, wx, oy, ox, w2, oy.astype(np.uint64), ox.astype(np.uint64)


class CubicSampler:
    """Exact values of the bicubically upsampled (x stride) maps at integer input pixels.

    Args:
        maps: (h, w, C) float32 maps at stride s.
        stride: s.
    """

    def __init__(self, maps: np.ndarray, stride: int):
        self.h, self.w, self.c = maps.shape
        self.stride = stride
        self.height, self.width = self.h * stride, self.w * stride
        self._maps = maps
        self.flat = np.ascontiguousarray(maps).reshape(-1)  # no copy for a contiguous map
        self._stack = None  # (lo, hi, stacked channels) for cv2.remap, made on demand
        (self._iy, self.wy, self.wx, self.oy, self.ox, self.w2, self.oy64,
         self.ox64) = _sampler_tables(self.h, self.w, self.c, stride)

    def sample(self, channel, x, y) -> np.ndarray:
        """(N,) channels, (N,) integer x, y in [0, W) x [0, H) -> (N,) float32 values."""
        channel, x, y = np.asarray(channel), np.asarray(x), np.asarray(y)
        if channel.size >= REMAP_MIN_SAMPLES and self.stride in (1, 2, 4, 8, 16):
            lo, hi = int(channel.min()), int(channel.max())
            if (hi - lo + 1) * (self.h + 4) < 32000:  # remap's 16-bit coordinates
                return self._sample_remap(channel, x, y, lo, hi)
        rows = self.oy[y] + channel.astype(np.int32)[:, None]              # (N, 4)
        vals = self.flat.take(rows[:, :, None] + self.ox[x][:, None, :])  # (N, 4, 4)
        w = self.w2[(y % self.stride) * self.stride + x % self.stride]   # (N, 16)
        return np.einsum("nk,nk->n", vals.reshape(-1, 16), w)

    def _sample_remap(self, channel, x, y, lo, hi) -> np.ndarray:
        """One cv2.remap over the channels stacked vertically.

        Channels lo..hi become one (n*(h+4), w) image, each padded with 2
        replicated rows above and below so that no tap reads a neighbouring
        channel; columns clamp through BORDER_REPLICATE. cv2.remap quantises
        source coordinates to 1/32 cell, and the half-pixel grid
        (2X + 1)/(2s) - 0.5 lies on it exactly for s = 1, 2, 4, 8, 16.
        """
        if self._stack is None or not (self._stack[0] <= lo and hi <= self._stack[1]):
            h = self.h
            stack = np.empty((hi - lo + 1, h + 4, self.w), np.float32)
            stack[:, 2:h + 2] = self._maps[:, :, lo:hi + 1].transpose(2, 0, 1)
            stack[:, :2] = stack[:, 2:3]              # replicated edge rows
            stack[:, h + 2:] = stack[:, h + 1:h + 2]
            self._stack = (lo, hi, stack.reshape(-1, self.w))
        base, _, img = self._stack
        n = x.size
        cols = min(n, 4096)          # remap's output must stay under 32767 columns
        rows = -(-n // cols)
        fx = np.zeros(rows * cols, np.float32)
        fy = np.zeros(rows * cols, np.float32)
        fx[:n] = (x + 0.5) / self.stride - 0.5
        fy[:n] = (y + 0.5) / self.stride + 1.5 + (channel - base) * (self.h + 4)
        out = cv2.remap(img, fx.reshape(rows, cols), fy.reshape(rows, cols), cv2.INTER_CUBIC,
                        borderMode=cv2.BORDER_REPLICATE)
        return out.reshape(-1)[:n]

    def rows(self, start: int, count: int) -> tuple:
        """Channels start.. upsampled along x only (cv2, same kernel), for many reads:
        (flat (count * h * W,) float32, row offsets (H, 4) uint64, channel stride).

        A pixel's value is then the 4-tap sum over y of this table
        (``wy[y, a] * flat[channel + offsets[y, a] + x]``): 4 reads instead of 16,
        for one ~2 ms pass over 30 channels at 128 x 128 (equal to the 16-tap sum up
        to float32 rounding). cv2's x-only resize leaves the rows as they are
        (weight exactly 1 on the row itself), so channels stacked vertically stay apart.
        """
        planes = np.ascontiguousarray(self._maps[:, :, start:start + count].transpose(2, 0, 1))
        wide = cv2.resize(planes.reshape(count * self.h, self.w), (self.width, count * self.h),
                          interpolation=cv2.INTER_CUBIC)
        return wide.reshape(-1), self._iy.astype(np.uint64) * np.uint64(self.width), self.h * self.width

    def full_block(self, start: int, count: int) -> np.ndarray:
        """(H, W, count) float32: channels start.. upsampled over the whole input (cv2, same kernel)."""
        out = cv2.resize(np.ascontiguousarray(self._maps[:, :, start:start + count]),
                         (self.width, self.height), interpolation=cv2.INTER_CUBIC)
        return out.reshape(self.height, self.width, count)


# A cell that is a 1-D maximum across x or y and within this fraction of its 3x3
# maximum also seeds a patch: where two same-type blobs overlap (max-combined, so
# the surface has a crease) the weaker top need not be a 3x3 maximum at stride s
# although it is one at full resolution.
NEAR_TOP = 0.9
# Maps with more than this fraction of their cells >= thre1 / overshoot are noise,
# not Gaussian blobs (uniform noise: ~93 %; 24 persons at 512 x 512: ~10 %, at
# 256 x 256: ~31 %, ~34 % with noise of sigma 0.04 added).
NOISE_FRACTION = 0.5


def _seeds(maps: np.ndarray, low: float) -> tuple:
    """(h, w, T) maps (a channel slice is fine) -> (rows, cols, types, primary, above)
    of the seeds, above = the number of cells >= low.

    A seed is >= low and either >= its 8 neighbours, or a 1-D maximum along a
    row or column within NEAR_TOP of its 3x3 maximum. Out-of-map neighbours are
    ignored (what reflect padding gives for a 3x3 max).
    """
    h, w, t = maps.shape
    flat = np.flatnonzero(maps >= low)
    if flat.size * 8 > maps.size:  # dense (noise): dilations are cheaper
        m = np.ascontiguousarray(maps)
        d3 = cv2.dilate(m, np.ones((3, 3), np.uint8)).reshape(h, w, t)
        dx = cv2.dilate(m, np.ones((1, 3), np.uint8)).reshape(h, w, t)
        dy = cv2.dilate(m, np.ones((3, 1), np.uint8)).reshape(h, w, t)
        primary = m >= d3
        keep = primary | (((m >= dx) | (m >= dy)) & (m >= NEAR_TOP * d3))
        above = flat.size
        flat = np.flatnonzero(keep & (m >= low))
        cell, st = np.divmod(flat, t)
        sr, sq = np.divmod(cell, w)
        return sr, sq, st, primary.reshape(-1)[flat], above
    # Sparse: test only the cells >= low, on a copy padded with -inf (an
    # out-of-map neighbour never wins, as with reflect padding) so that the 8
    # neighbours are fixed flat offsets.
    wp = w + 2
    pad = np.full((h + 2, wp, t), -np.inf, np.float32)
    pad[1:-1, 1:-1] = maps
    flat_p = pad.reshape(-1)
    cell, st = np.divmod(flat, t)
    sr, sq = np.divmod(cell, w)
    idx = ((sr + 1) * wp + sq + 1) * t + st
    v = flat_p[idx]
    nb = {(dy, dx): flat_p.take(idx + (dy * wp + dx) * t)
          for dy in (-1, 0, 1) for dx in (-1, 0, 1) if dy or dx}
    top = np.maximum.reduce(list(nb.values()))
    along_x = (v >= nb[0, -1]) & (v >= nb[0, 1])
    along_y = (v >= nb[-1, 0]) & (v >= nb[1, 0])
    primary = v >= top
    keep = primary | ((along_x | along_y) & (v >= NEAR_TOP * top))
    return sr[keep], sq[keep], st[keep], primary[keep], flat.size


def _best_per_type(types, key, counts, k) -> np.ndarray:
    """Indices of the k smallest ``key`` per type (among ties the lower index),
    grouped by type, ascending within a type.

    A radix sort on the small type ids finds each type's segment; within it a
    partition finds the k-th value (linear time: on noise this runs over ~60 000
    seeds).
    """
    order = np.argsort(types.astype(np.int16), kind="stable")
    ends = np.cumsum(counts).tolist()
    out = []
    for lo, hi in zip([0] + ends[:-1], ends):
        seg = order[lo:hi]
        if hi - lo <= k:
            out.append(seg)
            continue
        v = key[seg]
        kth = np.partition(v, k - 1)[k - 1]
        below = v < kth
        tie = v == kth
        out.append(seg[below | (tie & (np.cumsum(tie) <= k - np.count_nonzero(below)))])
    return np.concatenate(out)


def _patch_peaks(maps, sr, sq, st, u, cells, offsets, stride, threshold, radius):
    """The patch step of ``find_peaks`` in NumPy (``_kernels.patch_peaks`` without shared
    patches): (seed, ys, xs, off_x, off_y, score) of every refined 3x3 maximum of the
    seeds' patches (U, cells, offsets: ``patch_operator(stride, radius)``), in seed
    order (a pixel found from two seeds appears twice)."""
    h, w, _ = maps.shape
    height, width = h * stride, w * stride
    # --- patches around the seeds: U @ block @ U.T, one batched product
    rows = np.clip(sr[:, None] + cells, 0, h - 1)
    cols = np.clip(sq[:, None] + cells, 0, w - 1)
    block = maps[rows[:, :, None], cols[:, None, :], st[:, None, None]]   # (n, B, B)
    patch = np.matmul(np.matmul(u, block), u.T)                         # (n, P, P)
    py = sr[:, None] * stride + offsets                                 # (n, P) pixel rows
    px = sq[:, None] * stride + offsets
    inside = ((py >= 0) & (py < height))[:, :, None] & ((px >= 0) & (px < width))[:, None, :]
    patch = np.where(inside, patch, -np.inf)
    # --- 3x3 NMS on the search region (patch minus the refinement margin),
    # a separable 3x3 max: rows, then columns
    p = patch.shape[1]
    lo, hi = radius, p - radius
    rmax = np.maximum(np.maximum(patch[:, lo - 1:hi + 1, lo - 1:hi - 1], patch[:, lo - 1:hi + 1, lo:hi]),
                      patch[:, lo - 1:hi + 1, lo + 1:hi + 1])
    nmax = np.maximum(np.maximum(rmax[:, :-2], rmax[:, 1:-1]), rmax[:, 2:])
    centre = patch[:, lo:hi, lo:hi]
    is_max = (centre >= nmax) & (centre >= threshold)
    n, a, b = np.nonzero(is_max)
    a, b = a + lo, b + lo
    ys, xs = py[n, a], px[n, b]
    # --- refinement: score-weighted mean offset and window mean (§5.3, x/y correct)
    r = np.arange(-radius, radius + 1)
    win = patch[n[:, None, None], a[:, None, None] + r[None, :, None], b[:, None, None] + r[None, None, :]]
    fits = (xs >= radius) & (xs + radius < width) & (ys >= radius) & (ys + radius < height)
    win = np.where(fits[:, None, None], win, 0.0)  # windows cut by the border are unused
    wsum = win.sum(axis=(1, 2), dtype=np.float64)
    ok = fits & (wsum > 0)  # a non-positive window mass has no meaningful centroid
    safe = np.where(ok, wsum, 1.0)
    # With non-negative maps the centroid lies inside the window; a network's
    # maps can dip below zero, and a window whose mass nearly cancels would throw
    # the centroid anywhere (even off the image), so keep it inside the window.
    off_x = np.clip(np.where(ok, (win.sum(axis=1, dtype=np.float64) @ r) / safe, 0.0), -radius, radius)
    off_y = np.clip(np.where(ok, (win.sum(axis=2, dtype=np.float64) @ r) / safe, 0.0), -radius, radius)
    peak = patch[n, a, b].astype(np.float64)
    scores = np.where(fits, win.mean(axis=(1, 2), dtype=np.float64), peak)
    return n, ys, xs, off_x, off_y, scores


def find_peaks(maps: np.ndarray, stride: int, threshold: float, radius: int,
               max_candidates: int) -> tuple:
    """Refined keypoint peaks of the upsampled maps (§5.3), per type, capped.

    Args:
        maps: (h, w, T) float32 keypoint maps at stride s (finite); a channel
            slice of the full (h, w, C) output is fine (no copy is made).
        stride: s.
        threshold: thre1; a peak's upsampled value must be >= it.
        radius: refinement half-window (2 -> 5x5).
        max_candidates: at most this many peaks per type, highest scores kept.

    Returns:
        (types (N,) int64, xy (N, 2) float64 input pixels, scores (N,) float64),
        ordered by type, then row-major by integer peak position — the authors'
        candidate-id order. score = mean of the (2r+1)^2 window where it fits
        inside the input, else the peak value (§5.3).
    """
    h, w, t = maps.shape
    height, width = h * stride, w * stride
    empty = (np.zeros(0, np.int64), np.zeros((0, 2)), np.zeros(0))
    # --- seeds: low-res 3x3 maxima above thre1 / overshoot
    low = threshold / overshoot(stride)
    if USE_KERNELS:
        sr, sq, st, primary, val, above = _kernels.seeds(maps, np.float32(low), np.float32(NEAR_TOP))
    else:
        sr, sq, st, primary, above = _seeds(maps, low)
        val = None
    if sr.size == 0:
        return empty
    # Bound the patch work on pathological (noisy) maps: keep 2 * max_candidates
    # seeds per type, 3x3 maxima first, strongest first (a blob top has 1-4
    # seeds; the final cap is applied to the refined scores below). Where more
    # than NOISE_FRACTION of the cells are >= low the maps are noise, not blobs:
    # there max_candidates seeds per type (the strongest 3x3 maxima) suffice.
    keep_seeds = max_candidates if above > NOISE_FRACTION * maps.size else 2 * max_candidates
    counts = np.bincount(st, minlength=t)
    if counts.max() > keep_seeds:
        v = (maps[sr, sq, st] if val is None else val).astype(np.float64)
        rank_key = np.where(primary, 0.0, 2.0 * (np.abs(v).max() + 1.0)) - v  # 3x3 maxima first
        sel = _best_per_type(st, rank_key, counts, keep_seeds)
        sr, sq, st, primary = sr[sel], sq[sel], st[sel], primary[sel]
    offsets, cells, u = patch_operator(stride, radius)
    if USE_KERNELS:   # adjacent seeds share a patch where that is exact (power-of-two strides)
        off2, cells2, u2 = patch_operator(stride, radius, 2)
        n, ys, xs, off_x, off_y, scores = _kernels.patch_peaks(
            maps, sr, sq, st, primary, u2, cells2, off2, int(offsets[0] - off2[0]), offsets.size,
            stride, np.float32(threshold), radius, stride & (stride - 1) == 0)
    else:
        n, ys, xs, off_x, off_y, scores = _patch_peaks(maps, sr, sq, st, u, cells, offsets, stride,
                                                       np.float32(threshold), radius)
    if n.size == 0:
        return empty
    types = st[n]
    # --- the same pixel found from two seeds' patches: keep the first; np.unique
    # also sorts by (type, row, column), the authors' id order
    _, first = np.unique((types * height + ys) * width + xs, return_index=True)
    types, scores = types[first], scores[first]
    xy = np.stack([xs[first] + off_x[first], ys[first] + off_y[first]], axis=1)
    # --- cap per type (highest scores; the kept ones stay in id order)
    counts = np.bincount(types, minlength=t)
    if counts.max() > max_candidates:
        sel = _best_per_type(types, -scores, counts, max_candidates)
        types, xy, scores = types[sel], xy[sel], scores[sel]
    return types, xy, scores
