"""Teacher-student training data: a bottom-up teacher's maps as the student's targets.

Shapes: student input (H, W), stride s (4), C = 50 map channels, S = 5
supervision scales (h_j, w_j) = (H / s / 2**j, W / s / 2**j).

Knowledge distillation (Hinton et al., 2015) with dense targets: the student is
trained with its usual loss (L2 or focal L2, Li et al., AAAI 2020, §4) against
the teacher's maps instead of (or besides) the ground-truth maps. This module is
the data side and imports TensorFlow only to build the dataset:

* ``Teacher``: a trained bottom-up model folder (a training run or a converted
  checkpoint: ``model.keras`` + ``config.json``) loaded by ``keras_pose.load``;
  its maps are made by that ``PosePredictor`` (flip fusion, several scales), so
  there is one implementation of test-time augmentation.
* ``DistillLoader``: per sample one augmentation draw (one affine, one
  letterbox), the image, the mask of pixels that came from the image, and either
  the finished targets (teacher maps from a ``TeacherCache``) or the parts the
  training step combines with the teacher it runs itself (``distill_step``).
* ``TeacherCache``: the teacher's maps of every *unaugmented* training image,
  written once to a folder and warped by each draw's affine on every epoch.

Unlabeled images are framed whole (the image fitted into the input at the
nominal scale, then the usual random scale, rotation, shift and flip about its
centre); labeled samples (a ``CocoKeypoints`` source) keep the main-person
framing of §2.2, their ground truth wins wherever its loss mask is on, and the
teacher's maps fill the ignored regions (crowds, unannotated persons).
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import time

import cv2
import numpy as np

from keras_pose.data.pipeline import _aligned_empty
from keras_pose.data.transforms import (AugmentConfig, AugmentParams, apply_affine_to_sample,
                                        augment_params, hsv_tint, training_affine)
from keras_pose.io import ImageReadError, load_image

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
CACHE_VERSION = 1


# ---------------------------------------------------------------- teacher
class Teacher:
    """A trained bottom-up model, loaded with ``keras_pose.load``, and its predictor.

    Args:
        path: a model folder (``model.keras`` + ``config.json``: a training
            run's or ``export/convert_checkpoint.py``'s) or a ``.keras`` file
            with its ``config.json`` beside it.
        scales: test scales of the teacher's maps (default: 1.0 only).
        flip: fuse the mirrored image's maps (default: on).

    ``predictor`` is the ``PosePredictor`` that ``keras_pose.load`` builds, so
    the teacher's maps are made by the one implementation of flip fusion and
    scales; ``model`` is its Keras inference model (one output), ``codec`` the
    run's codec.
    """

    def __init__(self, path, scales=None, flip: bool | None = None):
        from keras_pose.inference.loader import load

        path = os.fspath(path)
        if not os.path.exists(path):
            raise FileNotFoundError(f"{path}: --teacher not found")
        if path.endswith(".tflite") or (os.path.isdir(path) and
                                        not os.path.isfile(os.path.join(path, "model.keras"))):
            raise ValueError(f"{path}: --teacher needs a Keras model (a run folder with "
                             "model.keras, or a converted checkpoint); an export runs at one size")
        self.path = path
        # One scale by default: the fused multi-scale maps made worse targets
        # (docs/distillation.md, "Measured").
        self.scales = tuple(float(s) for s in (scales or (1.0,)))
        self.flip = True if flip is None else bool(flip)
        try:
            pred = load(path, scales=self.scales, flip=self.flip)
        except ValueError as e:
            raise ValueError(f"--teacher {e}") from None
        task = getattr(getattr(pred, "descriptor", None), "task", None)
        if task != "bottom_up" or pred.net is None:
            raise ValueError(f"{path}: --teacher must be a bottom-up Keras model, got {task}")
        self._predictor = pred
        self.codec = pred.codec
        self.model = pred.net
        size = getattr(pred.network, "trained_size", None) or pred.fixed_size
        self.input_size = tuple(int(v) for v in size) if size else None

    @property
    def predictor(self):
        """The ``PosePredictor`` that makes the teacher's maps."""
        return self._predictor

    def describe(self) -> dict:
        return {"path": os.path.abspath(self.path), "scales": list(self.scales), "flip": self.flip,
                "input_size": list(self.input_size) if self.input_size else None,
                "params": int(self.model.count_params())}


def resample_maps(predictor, maps, m_maps, m_out, out_hw) -> np.ndarray:
    """(h, w, C) maps made on an input with affine ``m_maps`` -> the map frame of
    another input of ``out_hw`` pixels with affine ``m_out`` (both affines from
    the same source pixels). The predictor's own scale resampling (§5.2)."""
    return predictor._to_reference(np.asarray(maps, np.float32), m_maps, m_out, out_hw)


def combine_targets(gt, gt_mask, valid, teacher, teacher_weight=1.0):
    """Per pixel: ground truth where its loss mask is on, the teacher elsewhere.

    Shapes (..., h, w, C), (..., h, w, 1), (..., h, w, 1), (..., h, w, C); NumPy
    or tensors (only + and *). Returns (target (..., C), mask (..., 1)):
    target = m G + (1 - m) T and mask = m + (1 - m) v w_T, with m the ground
    truth's loss mask (0 where no label: unlabeled images, crowds, unannotated
    persons), v the share of the pixel that came from the image and w_T the
    teacher's weight. A pixel is supervised once, by the better source.
    """
    rest = 1.0 - gt_mask
    return gt_mask * gt + rest * teacher, gt_mask + rest * valid * teacher_weight


def person_regions(maps, m_maps, num_parts: int, stride: int, threshold: float = 0.3,
                   min_cells: int = 4) -> list:
    """[(cx, cy, height)] in original pixels: the persons the teacher's own maps show.

    ``maps`` (h, w, C) in the frame of an input with (2, 3) affine ``m_maps``;
    its first ``num_parts`` channels (limbs, then map points) are thresholded at
    ``threshold`` and each connected region (a skeleton: the limb maps join its
    points) is one person. No annotation is read: this frames unlabeled images
    about a person as §2.2 frames labeled ones about the main person.
    """
    fg = (np.max(maps[..., :num_parts], axis=-1) > threshold).astype(np.uint8)
    n, _, stats, _ = cv2.connectedComponentsWithStats(fg, connectivity=8)
    inv = cv2.invertAffineTransform(np.asarray(m_maps, np.float64))
    out = []
    for k in range(1, n):
        x, y, w, h, area = stats[k]
        if h < min_cells or w < 2:
            continue
        # cell edges -> input pixels -> original pixels (rotation-free letterbox)
        x0, y0 = x * stride - 0.5, y * stride - 0.5
        x1, y1 = (x + w) * stride - 0.5, (y + h) * stride - 0.5
        (a0, b0), (a1, b1) = (inv @ np.array([[x0, x1], [y0, y1], [1, 1]])).T
        out.append(((a0 + a1) / 2.0, (b0 + b1) / 2.0, abs(b1 - b0)))
    return out


# ---------------------------------------------------------------- sources
def list_images(folder) -> list:
    """Sorted image files of a folder (one level); a one-line error when there are none."""
    folder = os.fspath(folder)
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"{folder}: --images_dir is not a folder")
    files = sorted(os.path.join(folder, f) for f in os.listdir(folder)
                   if f.lower().endswith(IMAGE_SUFFIXES))
    if not files:
        raise ValueError(f"{folder}: --images_dir holds no images ({', '.join(IMAGE_SUFFIXES)})")
    return files


def fit_affine(image_hw, params: AugmentParams, out_size, target_dist: float = 0.6) -> np.ndarray:
    """(2, 3) original -> input affine of an unlabeled image (no main person).

    At ``params.scale`` 1 the whole image fits the (H, W) input (the inference
    letterbox's scale) centred; rotation, flip, shift and the scale draw act
    about the image centre as §2.2's act about the main person.
    """
    h, w = int(image_hw[0]), int(image_hw[1])
    oh, ow = int(out_size[0]), int(out_size[1])
    fit = min(oh / h, ow / w)
    # training_affine scales by target_dist / (scale_provided * H / (H - 1)).
    scale_provided = target_dist / fit * (oh - 1) / oh
    return training_affine(((w - 1) / 2.0, (h - 1) / 2.0), scale_provided, params, (oh, ow),
                           target_dist)


# ---------------------------------------------------------------- cache
class TeacherCache:
    """The teacher's fused maps of each unaugmented image, one ``.npy`` per image.

    Written once (``build``) and reused on every epoch and by later runs that
    name the same folder, teacher, scales and flip (``manifest.json``; a
    mismatch is refused). Maps are stored as float16 in the teacher's scale-1.0
    letterbox frame with its (2, 3) image -> input affine; ``get`` returns them
    as float32. A draw's affine then warps them into the student's frame
    (``resample_maps``): the teacher does not see that draw's tint, rotation or
    scale, which is the price of running it once per image instead of once per
    step (docs/distillation.md).
    """

    def __init__(self, folder, teacher: Teacher, paths):
        self.folder = os.fspath(folder)
        self.teacher = teacher
        self.paths = list(dict.fromkeys(os.path.abspath(p) for p in paths))
        self.index = {p: i for i, p in enumerate(self.paths)}
        self.manifest = {"version": CACHE_VERSION, "teacher": teacher.describe(),
                         "num_images": len(self.paths),
                         "images_hash": hashlib.sha1("\n".join(self.paths).encode()).hexdigest()}
        self._affines = None

    def _file(self, i: int) -> str:
        return os.path.join(self.folder, f"{i:07d}.npy")

    def build(self, batch: int = 16, verbose: bool = True) -> dict:
        """Compute the missing maps; returns {"images", "computed", "bytes", "seconds"}."""
        os.makedirs(self.folder, exist_ok=True)
        man_path = os.path.join(self.folder, "manifest.json")
        if os.path.isfile(man_path):
            with open(man_path, encoding="utf-8") as f:
                have = json.load(f)
            if have.get("manifest") != self.manifest:
                raise ValueError(f"{self.folder}: --teacher_cache was written for another "
                                 "teacher, scales, flip or image list; use a new folder")
            affines = {int(k): v for k, v in have.get("affines", {}).items()}
        else:
            affines = {}
        todo = [i for i in range(len(self.paths))
                if i not in affines or not os.path.isfile(self._file(i))]
        t0 = time.perf_counter()
        pred = self.teacher.predictor
        for start in range(0, len(todo), batch):
            chunk = todo[start:start + batch]
            imgs = []
            for i in chunk:
                try:
                    imgs.append(load_image(self.paths[i]))
                except ImageReadError as e:
                    raise ValueError(f"{self.paths[i]}: cannot read for the teacher cache ({e})") \
                        from None
            for i, (maps, m, _) in zip(chunk, pred.maps_batch(imgs)):
                np.save(self._file(i), maps.astype(np.float16))
                affines[i] = np.asarray(m, np.float64).tolist()
            if verbose and (start // batch) % 10 == 0:
                print(f"teacher cache: {min(start + batch, len(todo))}/{len(todo)} images "
                      f"({time.perf_counter() - t0:.0f} s)", flush=True)
            if (start // batch) % 20 == 19:   # a killed build resumes from here
                self._write_manifest(man_path, affines)
        self._write_manifest(man_path, affines)
        size = sum(os.path.getsize(self._file(i)) for i in range(len(self.paths)))
        info = {"images": len(self.paths), "computed": len(todo), "bytes": int(size),
                "seconds": round(time.perf_counter() - t0, 1)}
        if verbose:
            print(f"teacher cache {self.folder}: {info['images']} images, "
                  f"{size / 2 ** 20:.1f} MiB ({info['computed']} computed in "
                  f"{info['seconds']} s)", flush=True)
        self._affines = {i: np.asarray(a, np.float64) for i, a in affines.items()}
        return info

    def _write_manifest(self, path, affines) -> None:
        tmp = path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump({"manifest": self.manifest,
                       "affines": {str(k): v for k, v in affines.items()}}, f)
        os.replace(tmp, path)   # a reader never sees half a manifest

    def get(self, path):
        """(maps (h, w, C) float32, (2, 3) affine image -> teacher input) of one image."""
        i = self.index[os.path.abspath(path)]
        return np.load(self._file(i)).astype(np.float32), self._affines[i]


# ---------------------------------------------------------------- loader
class DistillLoader:
    """Per-batch distillation samples for ``pipeline.loader_dataset`` (TF-free).

    Args:
        codec: the student's ``BodyPartsCodec`` (its stride, scales, mask cut).
        input_size: the student's (H, W), multiples of s * 2**(S-1).
        images: unlabeled image paths (may be empty when ``labeled`` is given).
        labeled: an optional ``BottomUpLoader`` of a labeled set; its samples
            come first in the index space, so each image of either set is one
            sample per epoch (the shares follow the set sizes).
        cache: a built ``TeacherCache`` (targets finished here) or None (the
            training step runs the teacher: ``distill_step``).
        augment, augment_config, seed: as ``BottomUpLoader``; a sample's draw
            is ``rng([seed, epoch, index])`` whatever the thread order.
        teacher_weight: w_T of ``combine_targets``.
        framing: how an unlabeled image is framed before the draw: "image"
            (whole image fitted, the draw about its centre: ``fit_affine``) or
            "teacher" (about one person the teacher's cached maps show, drawn per
            sample, at ``target_dist`` H as §2.2 frames a labeled main person:
            ``person_regions``; needs ``cache``, falls back to "image" where the
            teacher sees nobody).

    ``load_batch`` returns images (B, H, W, 3) float32 and per scale j either
    the finished (B, h_j, w_j, C + 1) = [target | mask] (with a cache) or
    (B, h_j, w_j, C + 2) = [G | m | v]: ground truth (0 when unlabeled), its
    loss mask (0 when unlabeled) and the image-pixel share v.
    """

    def __init__(self, codec, input_size, images=(), labeled=None, cache: TeacherCache | None = None,
                 augment: bool = True, augment_config: AugmentConfig | None = None, seed: int = 0,
                 teacher_weight: float = 1.0, framing: str = "image"):
        if framing not in ("image", "teacher"):
            raise ValueError(f"framing must be 'image' or 'teacher', got {framing!r}")
        if framing == "teacher" and cache is None:
            raise ValueError("framing='teacher' needs the teacher's cache (--teacher_cache)")
        h, w = (int(input_size), int(input_size)) if np.isscalar(input_size) else map(int, input_size)
        multiple = codec.config.stride * 2 ** (codec.config.num_scales - 1)
        if h <= 0 or w <= 0 or h % multiple or w % multiple:
            raise ValueError(f"input_size must be positive multiples of {multiple}, got {(h, w)}")
        self.codec, self.spec = codec, codec.spec
        self.input_size = (h, w)
        self.images = [os.fspath(p) for p in images]
        self.labeled = labeled
        self.num_labeled = len(labeled) if labeled is not None else 0
        if not self.images and not self.num_labeled:
            raise ValueError("distillation needs unlabeled images or a labeled set")
        self.cache = cache
        if cache is not None:
            t_codec = cache.teacher.codec
            if t_codec.spec.num_channels != self.spec.num_channels or \
                    t_codec.config.stride != codec.config.stride:
                raise ValueError(f"teacher maps ({t_codec.spec.num_channels} channels, stride "
                                 f"{t_codec.config.stride}) do not fit the student's "
                                 f"({self.spec.num_channels}, {codec.config.stride})")
        self.augment = augment
        self.augment_config = augment_config or AugmentConfig()
        self.seed = int(seed)
        self.teacher_weight = float(teacher_weight)
        self.framing = framing
        self._regions = {}   # path -> person_regions of its cached maps (computed once)
        self.num_bad = 0

    def __len__(self) -> int:
        return self.num_labeled + len(self.images)

    def paths(self) -> list:
        """Every image the teacher must see (labeled first), for the cache."""
        lab = [s.path for s in self.labeled.samples] if self.labeled is not None else []
        return lab + self.images

    @property
    def target_shapes(self) -> list:
        h, w = self.input_size
        s, c = self.codec.config.stride, self.spec.num_channels
        extra = 1 if self.cache is not None else 2
        return [(h // s // 2 ** j, w // s // 2 ** j, c + extra)
                for j in range(self.codec.config.num_scales)]

    def _valid(self, image_hw, M) -> np.ndarray:
        """(h_0, w_0, 1) share of each stride-s cell that the image covers."""
        from keras_pose.codecs._bp_encode import _area_resize
        h, w = self.input_size
        ones = np.full(tuple(int(v) for v in image_hw[:2]), 255, np.uint8)
        warped = cv2.warpAffine(ones, np.asarray(M, np.float64), (w, h), flags=cv2.INTER_LINEAR,
                                borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        s = self.codec.config.stride
        return _area_resize(warped, h // s, w // s)[..., None]

    def _frame(self, path, hw, params, rng):
        """(2, 3) affine about one teacher-seen person (drawn with ``rng``), or None."""
        regions = self._regions.get(path)
        if regions is None:
            maps, m_teacher = self.cache.get(path)
            regions = person_regions(maps, m_teacher, self.spec.num_limbs + self.spec.num_internal,
                                     self.cache.teacher.codec.config.stride)
            self._regions[path] = regions
        if not regions:
            return None
        cx, cy, height = regions[int(rng.integers(len(regions)))]
        oh = self.input_size[0]
        # scale_provided = box height / H, as the labeled main person's (data/coco.py).
        return training_affine((cx, cy), max(height, 1.0) / oh, params,
                               self.input_size, self.augment_config.target_dist)

    def sample(self, epoch: int, index: int):
        """(image (H, W, 3) uint8, [packed targets per scale]); raises on a bad image."""
        index = int(index)
        if index < self.num_labeled:
            out, gt_levels = self.labeled.augmented(epoch, index)
            s = self.labeled.samples[index]
            path, hw, image = s.path, (s.height, s.width), out.image
            M, flip = out.record.matrix, out.record.flip
        else:
            path = self.images[index - self.num_labeled]
            image = load_image(path)
            hw = image.shape[:2]
            rng = np.random.default_rng([self.seed, int(epoch), index])
            p = augment_params(rng, self.augment_config) if self.augment else AugmentParams()
            if p.tint:
                image = hsv_tint(image, rng, self.augment_config)
            M = self._frame(path, hw, p, rng) if self.framing == "teacher" else None
            if M is None:
                M = fit_affine(hw, p, self.input_size, self.augment_config.target_dist)
            flip = p.flip
            none = np.zeros((0, self.spec.num_keypoints, 3), np.float32)
            image = apply_affine_to_sample(image, none, None, None, M, flip, self.spec,
                                           out_size=self.input_size).image
            gt_levels = None
        valid = self._valid(hw, M)
        if self.cache is None:
            levels = self.codec.pyramid({"heatmaps": valid, "mask": valid})
            packs = []
            for j, lv in enumerate(levels):
                if gt_levels is None:
                    g = np.zeros(lv["mask"].shape[:2] + (self.spec.num_channels,), np.float32)
                    m = np.zeros_like(lv["mask"])
                else:
                    g, m = gt_levels[j]["heatmaps"], gt_levels[j]["mask"]
                packs.append(np.concatenate([g, m, lv["mask"]], axis=-1))
            return image, packs
        maps, m_teacher = self.cache.get(path)
        t0 = resample_maps(self.cache.teacher.predictor, maps, m_teacher, M, self.input_size)
        if flip:   # the warp mirrored the maps: a left wrist's map is now on the right
            t0 = t0[..., self.spec.channel_flip_perm]
        levels = self.codec.pyramid({"heatmaps": np.ascontiguousarray(t0), "mask": valid})
        packs = []
        for j, lv in enumerate(levels):
            if gt_levels is None:
                target, mask = lv["heatmaps"], lv["mask"] * np.float32(self.teacher_weight)
            else:
                target, mask = combine_targets(gt_levels[j]["heatmaps"], gt_levels[j]["mask"],
                                               lv["mask"], lv["heatmaps"], self.teacher_weight)
            packs.append(np.concatenate([target, mask], axis=-1))
        return image, packs

    def load_batch(self, epochs, indices):
        """(images (B, H, W, 3) float32, [t_j (B, h_j, w_j, c_j)]); a sample with an
        unreadable image is replaced by the next readable one (counted in ``num_bad``)."""
        n_b = len(indices)
        images = _aligned_empty((n_b,) + self.input_size + (3,))
        targets = [_aligned_empty((n_b,) + shp) for shp in self.target_shapes]
        n = len(self)
        for b, (epoch, index) in enumerate(zip(epochs, indices)):
            for k in range(n):
                try:
                    image, packs = self.sample(int(epoch), (int(index) + k) % n)
                    break
                except (ImageReadError, cv2.error) as e:
                    self.num_bad += 1
                    log.warning("skipping sample %d (bad image): %s", (int(index) + k) % n, e)
            else:
                raise ValueError("none of the distillation images is readable")
            np.copyto(images[b], image)
            for t, p in zip(targets, packs):
                t[b] = p
        return images, targets
