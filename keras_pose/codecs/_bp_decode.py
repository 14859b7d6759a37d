"""Simple Pose decoding: stride-s maps -> persons (``docs/method_bottom_up.md`` §5.2-5.6).

Shapes: an h x w x C map at stride s (C >= L + J: the spec's L limbs, then its
J map points; COCO: 30 + 18), an H x W = s*h x s*w model input, P persons, K
keypoints of the KeypointSpec (COCO: 17).

Pipeline (Li et al., "Simple Pose", AAAI 2020; the authors' ``evaluate.py``):

1. flip fusion (§5.2 step 6) — ``fuse_flip``;
2. keypoint peaks of the x s bicubically upsampled maps: 3x3 NMS, ``thre1``,
   5x5 refinement, capped per type — ``_peaks.find_peaks``; on noise-like maps
   fewer per type so that at most ``max_limb_pairs`` pairs are scored —
   ``_grouping.cap_pairs``;
3. limb scores along each candidate segment, greedy one-to-one choice per limb
   by key — ``_grouping.score_limbs``;
4. greedy assembly with redundant limbs, final filter — ``_grouping.assemble``;
5. persons in input pixels, COCO order, neck dropped, missing keypoints
   (0, 0, 0), score 1 - 1/total (§5.5-5.6).

Why it is equivalent to, yet much faster than, the authors' full-resolution
path: their step 7 upsamples all maps x4 with OpenCV bicubic (half-pixel
centres) and works on that. Every quantity they read from the upsampled maps is
a fixed 4x4-cell weighted sum of the stride-s maps, so we compute exactly those
values and no others — small patches around low-resolution maxima for the
peaks, single pixels along candidate segments for the limbs (see ``_peaks`` for
which peaks are seeded and what that can miss). Results agree with a literal
full-resolution implementation (``tests/_reference_decoder.py``) to float
rounding on clean maps (crowds of 24 included); on noisy maps it also keeps
some weak ringing maxima we skip. ``benchmarks/grouping.py`` times both.

We decode in model-input pixels; callers map back with
``poses.transform(invert_affine(M))``. Imports without TensorFlow.
"""
from __future__ import annotations

import numpy as np

from keras_pose.codecs import _assembly, _grouping, _peaks
from keras_pose.structures import Poses


MAX_ABS_MAP_VALUE = 1e6  # larger map values are a broken output, not a confident one


def _check_maps(maps, name: str, min_channels: int) -> np.ndarray:
    try:
        m = np.asarray(maps, dtype=np.float32)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a numeric (h, w, C) array") from None
    if m.ndim != 3:
        raise ValueError(f"{name} must have shape (h, w, C) (one image, channels last), "
                         f"got shape {m.shape}")
    if m.shape[0] < 1 or m.shape[1] < 1:
        raise ValueError(f"{name} has an empty spatial size {m.shape[:2]}")
    if m.shape[2] < min_channels:
        raise ValueError(f"{name} has {m.shape[2]} channels; the body-part codec needs at "
                         f"least {min_channels} (limbs then keypoints)")
    # Two reductions find both problems: NaN/inf propagate into max or min, and
    # the extremes bound |value|. Maps are ~0..1 (Gaussian targets); values near
    # float32's range overflow the bicubic weights and the limb integrals into
    # inf scores (found by fuzzing).
    if m.size:
        hi, lo = float(m.max()), float(m.min())
        if not (np.isfinite(hi) and np.isfinite(lo)):
            bad = m.size - np.count_nonzero(np.isfinite(m))
            raise ValueError(f"{name} contains {bad} non-finite values (NaN/inf); "
                             f"the model output is broken")
        if (peak := max(hi, -lo)) > MAX_ABS_MAP_VALUE:
            raise ValueError(f"{name} holds values up to {peak:.3g} (expected about 0..1); "
                             f"the model output is broken")
    return m


def fuse_flip(codec, maps, mirrored_maps) -> np.ndarray:
    """(h, w, C) maps and those of the mirrored input -> their average (§5.2 step 6).

    The mirrored maps are flipped back horizontally and their channels permuted
    with ``spec.channel_flip_perm`` (left/right limbs and keypoints swap). With
    half-pixel cell centres a horizontal mirror of the input is exactly a mirror
    of the cell grid, so no resampling is needed. C may be the full channel count
    or the first limbs + keypoints channels.
    """
    spec = codec.spec
    need = spec.num_limbs + spec.num_internal
    a = _check_maps(maps, "maps", need)
    b = _check_maps(mirrored_maps, "mirrored_maps", need)
    if a.shape != b.shape:
        raise ValueError(f"maps {a.shape} and mirrored_maps {b.shape} differ in shape")
    perm = spec.channel_flip_perm
    c = a.shape[2]
    if c > perm.size or sorted(perm[:c]) != list(range(c)):
        raise ValueError(f"maps have {c} channels; flip fusion needs {need} or "
                         f"{perm.size} (the spec's channel layout)")
    return 0.5 * (a + b[:, ::-1, perm[:c]])


def decode_maps(codec, heatmaps, image_height=None) -> Poses:
    """(h, w, >= 48) maps at stride s -> ``Poses`` in input pixels (§5.3-5.6).

    Args:
        codec: a BodyPartsCodec (config thresholds, spec channel layout).
        heatmaps: the maps (limb channels first, then internal keypoints).
        image_height: H_img of the limb length prior (§5.4), in input pixels;
            the authors pass the (resized) image height. Default: s * h.

    Returns:
        Poses with (P, K, 3) keypoints [x, y, score] (score = refined peak
        score; missing: (0, 0, 0)) and (P,) scores 1 - 1/total.
    """
    spec, cfg = codec.spec, codec.config
    maps = _check_maps(heatmaps, "heatmaps", spec.num_limbs + spec.num_internal)
    stride = int(cfg.stride)
    if image_height is None:
        image_height = stride * maps.shape[0]
    try:
        image_height = float(image_height)
    except (TypeError, ValueError):
        raise ValueError(f"image_height must be a number, got {image_height!r}") from None
    if not image_height > 0:
        raise ValueError(f"image_height must be > 0, got {image_height}")
    kstart = spec.keypoint_start
    kmaps = maps[:, :, kstart:kstart + spec.num_internal]   # a view, no copy
    types, xy, scores = _peaks.find_peaks(kmaps, stride, cfg.peak_threshold,
                                          cfg.refine_radius, cfg.max_candidates)
    if types.size == 0:
        return Poses.empty(spec.num_keypoints)
    keep = _grouping.cap_pairs(types, scores, spec, cfg.max_limb_pairs)
    if keep.size < types.size:
        types, xy, scores = types[keep], xy[keep], scores[keep]
    sampler = _peaks.CubicSampler(maps, stride)
    if cfg.grouping == "paper":
        conns, special = _grouping.score_limbs(sampler, types, xy, scores, spec, cfg, image_height)
        ids, totals = _grouping.final_filter(
            _grouping.assemble(conns, special, scores, spec, cfg, raw=True), cfg)
    else:
        ids, totals = _assembly.assemble_matched(sampler, types, xy, scores, spec, cfg,
                                                 image_height)
    if not len(ids):
        return Poses.empty(spec.num_keypoints)
    found = ids >= 0                                                # (P, J)
    safe = np.where(found, ids, 0)
    internal = np.concatenate([xy[safe], scores[safe][..., None]], axis=-1)
    internal = np.where(found[..., None], internal, 0.0)
    return Poses(spec.to_coco(internal), (1.0 - 1.0 / totals).astype(np.float32))
