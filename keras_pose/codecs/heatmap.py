"""HeatmapCodec: the top-down (FasterPose / SimpleBaseline) representation.

Shapes: K keypoints, crop (model input) H x W pixels, heatmaps h x w per joint,
N crops in a batch.

Encode: keypoints in crop pixels -> one Gaussian per joint with an unbiased,
sub-pixel centre (DARK, Zhang et al. CVPR 2020) placed with the UDP mapping
x_hm = x_crop * (w - 1) / (W - 1) (Huang et al. CVPR 2020), plus per-joint
weights (``docs/method_top_down.md`` §2.4, §3.4).

Decode: argmax, then DARK refinement - blur modulation that keeps the map's
maximum, log, one Newton step with central differences - and the UDP mapping
back to crop pixels (§5.1). The flip test averages a crop's maps with the
mirrored crop's maps flipped back with the channels permuted (§5.2; no shift,
because the UDP mirror x -> (W - 1) - x is exact on the pixel grid).

Pure NumPy + OpenCV: imports without TensorFlow. Works unchanged for any
heatmap size, e.g. 8x6 ... 64x48 for a 256x192 input (FasterPose r = 1..8).
"""
from __future__ import annotations

import dataclasses
from typing import Optional, Tuple

import cv2
import numpy as np

from keras_pose.config import Config
from keras_pose.skeleton import COCO, KeypointSpec

# The heatmap height of the published settings (sigma 2, blur 11 at 64x48;
# docs/method_top_down.md §2.4, §5.1).
_REF_HEIGHT = 64.0
_REF_SIGMA = 2.0
_REF_BLUR = 11
# Floor on the default sigma. Below ~0.7 px a sampled Gaussian aliases, and the
# DARK blur then biases the Newton step (measured: sigma 0.25 at 8x6 -> 0.30 px
# error on noise-free targets; 0.5 -> 0.047 px; 0.75 -> 0.001 px).
_MIN_SIGMA = 0.75


@dataclasses.dataclass
class HeatmapCodecConfig(Config):
    """Numbers of the top-down heatmap codec (``docs/method_top_down.md`` §2.4, §5).

    input_size / heatmap_size are (H, W) / (h, w). ``sigma`` (heatmap pixels) and
    ``blur_kernel`` default to None, meaning "scaled from the reference 64x48":
    sigma = max(2 * h / 64, 0.75) and blur = 11 * h / 64 rounded down, made odd
    and >= 3. (The floor only acts below 24 x 18 maps, i.e. FasterPose r <= 2.)
    """

    input_size: Tuple[int, int] = (256, 192)
    heatmap_size: Tuple[int, int] = (64, 48)
    sigma: Optional[float] = None
    blur_kernel: Optional[int] = None
    use_dark: bool = True
    flip_shift: bool = False   # HRNet's 1-px shift of flipped maps; UDP needs none (§5.2)

    def validate(self) -> None:
        for name in ("input_size", "heatmap_size"):
            v = getattr(self, name)
            if len(v) != 2 or min(int(x) for x in v) < 3:
                raise ValueError(f"HeatmapCodecConfig.{name} must be (H, W) with both >= 3, got {v}")
        if self.sigma is not None and not self.sigma > 0:
            raise ValueError(f"HeatmapCodecConfig.sigma must be > 0, got {self.sigma}")
        if self.blur_kernel is not None and (self.blur_kernel < 1 or self.blur_kernel % 2 == 0):
            raise ValueError(f"HeatmapCodecConfig.blur_kernel must be odd and >= 1, got {self.blur_kernel}")

    @property
    def resolved_sigma(self) -> float:
        if self.sigma is not None:
            return float(self.sigma)
        return max(_REF_SIGMA * self.heatmap_size[0] / _REF_HEIGHT, _MIN_SIGMA)

    @property
    def resolved_blur_kernel(self) -> int:
        if self.blur_kernel is not None:
            return int(self.blur_kernel)
        k = int(_REF_BLUR * self.heatmap_size[0] / _REF_HEIGHT)
        k = k if k % 2 == 1 else k + 1
        return max(k, 3)


def _band(n: int, k: int) -> np.ndarray:
    """(n, n) matrix applying a 1-D Gaussian of size k along an axis, zeros outside."""
    g = cv2.getGaussianKernel(k, 0).reshape(-1)
    idx = np.arange(n)
    off = idx[None, :] - idx[:, None] + k // 2          # column j contributes g[j - i + k//2]
    return np.where((off >= 0) & (off < k), g[np.clip(off, 0, k - 1)], 0.0)


class HeatmapCodec:
    """Encode crop keypoints to Gaussian heatmaps and decode heatmaps (DARK + UDP).

    Args:
        config: a HeatmapCodecConfig.
        spec: the KeypointSpec (flip permutation, K).
        **overrides: config fields to change, e.g. ``heatmap_size=(8, 6)``.
    """

    def __init__(self, config: HeatmapCodecConfig | None = None,
                 spec: KeypointSpec | None = None, **overrides):
        config = config or HeatmapCodecConfig()
        if overrides:
            config = config.replace(**overrides)
        config.validate()
        self.config = config
        self.spec = spec or COCO
        H, W = (int(v) for v in config.input_size)
        h, w = (int(v) for v in config.heatmap_size)
        self.input_size, self.heatmap_size = (H, W), (h, w)
        # UDP: the pixel grids' end points coincide, hence the (n - 1) ratios.
        self._to_hm = np.array([(w - 1) / (W - 1), (h - 1) / (H - 1)])
        self.sigma = config.resolved_sigma
        self.blur_kernel = config.resolved_blur_kernel

    @property
    def num_keypoints(self) -> int:
        return self.spec.num_keypoints

    @property
    def stride(self) -> float:
        """Input pixels per heatmap pixel (along the height)."""
        return (self.input_size[0] - 1) / (self.heatmap_size[0] - 1)

    # ------------------------------------------------------------ encoding
    def encode(self, keypoints) -> dict:
        """Training targets for one crop.

        Args:
            keypoints: (K, 3) [x, y, v] in crop pixels; v = 0 means unlabelled.

        Returns:
            {"heatmaps": (h, w, K) float32 Gaussians with peak 1 at the exact
            sub-pixel centre, "weights": (K,) float32}. A joint weighs 0 when it
            is unlabelled, not finite, or its centre lies more than 3 sigma off
            the map (§3.4); its map is then all zero.
        """
        kp = np.asarray(keypoints, np.float64)
        K = self.num_keypoints
        if kp.shape != (K, 3):
            raise ValueError(f"HeatmapCodec.encode: keypoints must be ({K}, 3), got {kp.shape}")
        h, w = self.heatmap_size
        mu = kp[:, :2] * self._to_hm                          # (K, 2) heatmap pixels
        s = self.sigma
        with np.errstate(invalid="ignore"):
            on_map = ((mu[:, 0] >= -3 * s) & (mu[:, 0] <= w - 1 + 3 * s)
                      & (mu[:, 1] >= -3 * s) & (mu[:, 1] <= h - 1 + 3 * s))
        valid = (kp[:, 2] > 0) & np.isfinite(kp).all(axis=1) & on_map
        mu = np.where(valid[:, None], mu, 0.0)
        # Separable Gaussian: exp(-(dx^2 + dy^2) / 2s^2) = gx * gy (DARK's unbiased target).
        gx = np.exp(-((np.arange(w)[None, :] - mu[:, :1]) ** 2) / (2 * s * s))   # (K, w)
        gy = np.exp(-((np.arange(h)[None, :] - mu[:, 1:]) ** 2) / (2 * s * s))   # (K, h)
        maps = gy[:, :, None] * gx[:, None, :] * valid[:, None, None]             # (K, h, w)
        return {"heatmaps": np.ascontiguousarray(maps.transpose(1, 2, 0), np.float32),
                "weights": valid.astype(np.float32)}

    def pack_targets(self, encoded: dict) -> np.ndarray:
        """(h, w, 2K) float32 = concat(heatmaps, weights broadcast): the loss's y_true."""
        hm = encoded["heatmaps"]
        wt = np.broadcast_to(encoded["weights"][None, None, :], hm.shape)
        return np.concatenate([hm, wt], axis=-1).astype(np.float32)

    # ------------------------------------------------------------ decoding
    def decode(self, heatmaps) -> np.ndarray:
        """Heatmaps -> keypoints in crop pixels.

        Args:
            heatmaps: (h, w, K) or (N, h, w, K); probabilities (FasterPose's
                inference model applies the sigmoid) or linear maps (SimpleBaseline).

        Returns:
            (K, 3) or (N, K, 3) float32 [x, y, score]; score = the map's maximum.
        """
        hm = np.asarray(heatmaps, np.float32)
        single = hm.ndim == 3
        if single:
            hm = hm[None]
        h, w = self.heatmap_size
        if hm.ndim != 4 or hm.shape[1:3] != (h, w):
            raise ValueError(f"HeatmapCodec.decode: expected (N, {h}, {w}, K) or ({h}, {w}, K) "
                             f"heatmaps, got shape {np.shape(heatmaps)}")
        hm = np.nan_to_num(hm, nan=0.0, posinf=0.0, neginf=0.0)
        N, _, _, K = hm.shape
        flat = hm.reshape(N, h * w, K)
        idx = flat.argmax(axis=1)                              # (N, K)
        score = np.take_along_axis(flat, idx[:, None, :], axis=1)[:, 0, :]
        xy = np.stack([idx % w, idx // w], axis=-1).astype(np.float64)   # (N, K, 2)
        if self.config.use_dark:
            xy = xy + self._dark_offsets(hm, xy.astype(np.int64))
        xy = xy / self._to_hm                                  # UDP: back to crop pixels
        out = np.concatenate([xy, score[..., None]], axis=-1).astype(np.float32)
        return out[0] if single else out

    def _dark_offsets(self, hm: np.ndarray, peak: np.ndarray) -> np.ndarray:
        """(N, K, 2) sub-pixel offsets: one Newton step on the log of the modulated map.

        DARK (Zhang et al., CVPR 2020, Eq. 8-11): blur with the configured kernel,
        rescale so the maximum is unchanged, log (clamped at 1e-10), and take
        offset = -H^-1 g with central differences at the integer peak.
        """
        N, h, w, K = hm.shape
        k = self.blur_kernel
        # Separable Gaussian blur with zero padding, written as two band matrices
        # (kernel = cv2.getGaussianKernel(k, 0), DARK's choice); one einsum blurs
        # every map of the batch, with no limit on the number of channels.
        blurred = np.einsum("ij,njwk,lw->nilk", _band(h, k), hm, _band(w, k), optimize=True)
        # Keep the max: the modulation changes the shape near the peak, not its height.
        old_max = hm.max(axis=(1, 2), keepdims=True)
        new_max = blurred.max(axis=(1, 2), keepdims=True)
        with np.errstate(divide="ignore", invalid="ignore"):
            blurred = np.where(new_max > 0, blurred * (old_max / new_max), blurred)
        px, py = peak[..., 0], peak[..., 1]
        # The blur is truncated by the map border and pulls peaks near it inwards
        # (measured: 0.47 px at 1.2 px from the edge of a 64x48 map); where the
        # kernel does not fit, the Newton step is taken on the raw map instead.
        # Skip-at-border (DARK's rule) is replaced by the moved stencil below.
        r = k // 2
        fits = (px >= r) & (px <= w - 1 - r) & (py >= r) & (py <= h - 1 - r)
        blurred = np.where(fits[:, None, None, :], blurred, hm)
        logm = np.log(np.maximum(blurred, 1e-10))

        # The 3x3 stencil sits at the argmax, moved one pixel inwards when the
        # argmax is on a border: the vertex of the fitted quadratic is then still
        # found (exactly for a noise-free Gaussian, whose log is quadratic).
        cx, cy = np.clip(px, 1, w - 2), np.clip(py, 1, h - 2)
        n_i, k_i = np.meshgrid(np.arange(N), np.arange(K), indexing="ij")

        def at(dy, dx):
            return logm[n_i, cy + dy, cx + dx, k_i]

        c0 = at(0, 0)
        gx = 0.5 * (at(0, 1) - at(0, -1))
        gy = 0.5 * (at(1, 0) - at(-1, 0))
        hxx = at(0, 1) - 2 * c0 + at(0, -1)
        hyy = at(1, 0) - 2 * c0 + at(-1, 0)
        hxy = 0.25 * (at(1, 1) - at(1, -1) - at(-1, 1) + at(-1, -1))
        det = hxx * hyy - hxy * hxy
        # A maximum needs a negative-definite Hessian; anything else (flat map,
        # saddle, clamped log) gets no 2-D step rather than a wild one, only a
        # 1-D step along each axis whose curvature is negative.
        ok2 = (det > 1e-12) & (hxx < 0)
        safe = np.where(ok2, det, 1.0)
        okx, oky = ~ok2 & (hxx < -1e-12), ~ok2 & (hyy < -1e-12)
        ox = np.where(ok2, -(hyy * gx - hxy * gy) / safe,
                      np.where(okx, -gx / np.where(okx, hxx, 1.0), 0.0))
        oy = np.where(ok2, -(hxx * gy - hxy * gx) / safe,
                      np.where(oky, -gy / np.where(oky, hyy, 1.0), 0.0))
        # Offsets are relative to the argmax, not to the (possibly moved) stencil.
        off = np.stack([np.where(ok2 | okx, ox + (cx - px), 0.0),
                        np.where(ok2 | oky, oy + (cy - py), 0.0)], axis=-1)
        # The true peak of a sampled unimodal map lies within a pixel of its argmax.
        return np.clip(off, -1.0, 1.0)

    # ------------------------------------------------------------ flip test
    def fuse_flip(self, heatmaps, mirrored_heatmaps) -> np.ndarray:
        """Average maps with the horizontally mirrored crop's maps (§5.2).

        Both (h, w, K) or (N, h, w, K). The mirrored maps are flipped back along
        the width and their channels permuted with ``spec.flip_perm`` (channel k
        of the mirror holds the joint flip_perm[k]). With UDP crops no shift is
        applied; ``flip_shift=True`` reproduces HRNet's 1-pixel right shift.
        """
        a = np.asarray(heatmaps, np.float32)
        b = np.asarray(mirrored_heatmaps, np.float32)
        if a.shape != b.shape or a.ndim not in (3, 4):
            raise ValueError(f"HeatmapCodec.fuse_flip: shapes {a.shape} and {b.shape} must match "
                             "and be (h, w, K) or (N, h, w, K)")
        back = b[..., ::-1, :][..., self.spec.flip_perm]
        if self.config.flip_shift:
            back = np.concatenate([back[..., :1, :], back[..., :-1, :]], axis=-2)
        return (a + back) / 2.0

    # ------------------------------------------------------- serialisation
    def get_config(self) -> dict:
        return {"config": self.config.to_dict(), "spec": self.spec.to_dict()}

    @classmethod
    def from_config(cls, d: dict) -> "HeatmapCodec":
        return cls(HeatmapCodecConfig.from_dict(d["config"]), KeypointSpec.from_dict(d["spec"]))

    def __repr__(self) -> str:
        return f"HeatmapCodec({self.config})"
