"""tf.data input for the bottom-up model: read -> augment -> encode -> batch -> prefetch.

Shapes: B batch, H x W model input, C = spec.num_channels (COCO: 50) target channels,
S = codec.config.num_scales (5) supervision scales, h_j = H / 4 / 2**j.

``bottom_up_dataset`` yields ``(images, (t_0, ..., t_{S-1}))`` with images
float32 (B, H, W, 3) RGB in [0, 255] and t_j float32 (B, h_j, w_j, C + 1) =
concat(codec pyramid heatmaps, mask) on the last axis: what the model and
``FocalL2Loss`` consume (docs/method_bottom_up.md §2.2-2.6). The work is NumPy and OpenCV
(``BottomUpLoader``): one ``tf.numpy_function`` per batch of (epoch, index)
pairs writes every sample straight into the batch arrays, and a parallel map
runs several batches at once (OpenCV and large NumPy operations release the GIL).
Per-sample numpy_function calls plus ``batch`` cost ~5 ms of extra CPU per
512 x 512 sample in TensorFlow's copies and scheduling; per-batch loading
removes nearly all of it.

TensorFlow is imported inside the functions that build datasets, so the loader
itself can be used (and tested, and benchmarked) without it.
"""
from __future__ import annotations

import logging
import threading

import cv2
import numpy as np

from keras_pose.data.transforms import (AugmentConfig, AugmentParams, apply_affine_to_sample,
                                        augment_params, hsv_tint, training_affine)
from keras_pose.geometry import letterbox_to
from keras_pose.io import ImageReadError, load_image

log = logging.getLogger(__name__)

_REPEAT_EPOCHS = 2 ** 62  # "forever" for the epoch counter


class BottomUpLoader:
    """The per-sample work of the bottom-up pipeline, without TensorFlow.

    Args:
        source: a ``CocoKeypoints`` (anything with ``samples(input_height)``,
            ``person_mask(image_id)`` and ``ignore_mask(image_id)``).
        codec: the ``BodyPartsCodec`` that encodes targets.
        input_size: (H, W) of the model input; multiples of 4 * 2**(S-1).
        augment: random §2.2 augmentation; otherwise the main person is
            centred at the nominal scale with no rotation, flip, shift or tint.
        augment_config: AugmentConfig (defaults: the authors').
        seed: base seed; sample (epoch, index) draws from rng([seed, epoch, index]),
            so a sample's augmentation does not depend on threads or order.
    """

    def __init__(self, source, codec, input_size, augment: bool = True,
                 augment_config: AugmentConfig | None = None, seed: int = 0):
        h, w = (int(input_size), int(input_size)) if np.isscalar(input_size) else map(int, input_size)
        multiple = codec.config.stride * 2 ** (codec.config.num_scales - 1)
        if h <= 0 or w <= 0 or h % multiple or w % multiple:
            raise ValueError(f"input_size must be positive multiples of {multiple}, got {(h, w)}")
        if seed < 0:
            raise ValueError(f"seed must be >= 0, got {seed}")
        self.source, self.codec = source, codec
        self.input_size = (h, w)
        self.augment = augment
        self.augment_config = augment_config or AugmentConfig()
        self.seed = int(seed)
        self.samples = list(source.samples(input_height=h))
        if not self.samples:
            raise ValueError(f"{source!r} has no training samples (no main persons)")
        self.num_bad = 0           # samples skipped or replaced because of a bad image
        self.bad_indices: set = set()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def target_shapes(self) -> list:
        """[(h_j, w_j, C + 1)] for j = 0..S-1."""
        h, w = self.input_size
        s, c = self.codec.config.stride, self.codec.spec.num_channels + 1
        return [(h // s // 2 ** j, w // s // 2 ** j, c) for j in range(self.codec.config.num_scales)]

    def params(self, epoch: int, index: int) -> AugmentParams:
        """The augmentation draw of sample ``index`` in ``epoch`` (identity if not augmenting)."""
        if not self.augment:
            return AugmentParams()
        return augment_params(self._rng(epoch, index), self.augment_config)

    def _rng(self, epoch: int, index: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, int(epoch), int(index)])

    def _sample(self, epoch: int, index: int):
        """(image (H, W, 3) uint8, codec pyramid levels); raises on a bad image."""
        out, levels = self.augmented(epoch, index)
        return out.image, levels

    def augmented(self, epoch: int, index: int):
        """(``AugmentedSample`` (image, keypoints, masks, record with the affine M),
        codec pyramid levels) of sample ``index`` in ``epoch``; raises on a bad image."""
        s = self.samples[int(index)]
        image = load_image(s.path)
        if image.shape[:2] != (s.height, s.width):
            raise ImageReadError(f"{s.path}: image is {image.shape[1]}x{image.shape[0]} but the "
                                 f"annotations say {s.width}x{s.height}")
        rng = self._rng(epoch, index)
        p = augment_params(rng, self.augment_config) if self.augment else AugmentParams()
        if p.tint:
            image = hsv_tint(image, rng, self.augment_config)
        M = training_affine(s.objpos, s.scale_provided, p, self.input_size,
                            self.augment_config.target_dist)
        ignore = self.source.ignore_mask(s.image_id)
        if not ignore.any():   # most images: skip a warp and the codec's mask work
            ignore = None
        out = apply_affine_to_sample(image, s.keypoints, self.source.person_mask(s.image_id),
                                     ignore, M, p.flip, self.codec.spec, out_size=self.input_size)
        targets = self.codec.encode(out.keypoints, self.input_size, out.person_mask, out.ignore_mask)
        return out, self.codec.pyramid(targets)

    def _mark_bad(self, index: int, error) -> None:
        """Remember a sample with a bad image; log it the first time only."""
        with self._lock:
            first = int(index) not in self.bad_indices
            self.bad_indices.add(int(index))
        (log.warning if first else log.debug)("skipping sample %d (bad image): %s", int(index), error)

    def _count_skip(self) -> None:
        with self._lock:
            self.num_bad += 1

    def load(self, epoch: int, index: int):
        """One sample -> (ok, image (H, W, 3) uint8 RGB, [t_j (h_j, w_j, C + 1) float32]).

        A sample whose image cannot be read (missing, empty, corrupt, or not the
        size the annotations give) is reported with ok = False and zero arrays,
        counted in ``num_bad`` and logged once.
        """
        try:
            image, levels = self._sample(epoch, index)
        except (ImageReadError, cv2.error) as e:
            self._mark_bad(index, e)
            self._count_skip()
            return False, np.zeros(self.input_size + (3,), np.uint8), \
                [np.zeros(t, np.float32) for t in self.target_shapes]
        packed = [np.concatenate([lv["heatmaps"], lv["mask"]], axis=-1, out=_aligned_empty(shp))
                  for lv, shp in zip(levels, self.target_shapes)]
        return True, image, packed

    def load_batch(self, epochs, indices):
        """A whole batch, written straight into 64-byte aligned arrays.

        Args:
            epochs, indices: (B,) integer arrays.

        Returns:
            images (B, H, W, 3) float32 RGB 0..255 and [t_j (B, h_j, w_j, C + 1)].
            A sample with a bad image is replaced by the next readable one in
            sample order (deterministic, so batches stay full and reproducible);
            every replacement is counted in ``num_bad``, each bad file logged once.
            TensorFlow then wraps these arrays without a copy and there is no
            per-sample batching work on its side.
        """
        n_b = len(indices)
        images = _aligned_empty((n_b,) + self.input_size + (3,))
        targets = [_aligned_empty((n_b,) + shp) for shp in self.target_shapes]
        for b, (epoch, index) in enumerate(zip(epochs, indices)):
            image, levels = self._sample_or_substitute(int(epoch), int(index))
            np.copyto(images[b], image)   # uint8 -> float32
            for t, lv in zip(targets, levels):
                np.concatenate([lv["heatmaps"], lv["mask"]], axis=-1, out=t[b])
        return images, targets

    def _sample_or_substitute(self, epoch: int, index: int):
        n = len(self.samples)
        for k in range(n):
            j = (index + k) % n
            if j in self.bad_indices:
                continue
            try:
                result = self._sample(epoch, j)
            except (ImageReadError, cv2.error) as e:
                self._mark_bad(j, e)
                continue
            if k:
                self._count_skip()
            return result
        raise ValueError(f"none of the {n} samples of {self.source!r} has a readable image")


# TensorFlow wraps a NumPy result without copying only when its buffer is
# 64-byte aligned (Eigen's alignment); large NumPy arrays are 16-byte aligned.
# Aligned outputs avoid one more copy of every batch.
_ALIGN = 64


def _aligned_empty(shape, dtype=np.float32) -> np.ndarray:
    nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
    buf = np.empty(nbytes + _ALIGN, np.uint8)
    off = (-buf.ctypes.data) % _ALIGN
    return buf[off:off + nbytes].view(dtype).reshape(shape)


def _index_dataset(n: int, shuffle: bool, seed: int, repeat: bool):
    """(epoch, index) pairs; each epoch is a stateless permutation of range(n)."""
    import tensorflow as tf

    def one_epoch(epoch):
        idx = tf.range(n, dtype=tf.int64)
        if shuffle:
            idx = tf.random.experimental.stateless_shuffle(
                idx, seed=tf.stack([tf.constant(seed, tf.int64), epoch]))
        return tf.data.Dataset.from_tensor_slices(idx).map(lambda i: (epoch, i))

    return tf.data.Dataset.range(_REPEAT_EPOCHS if repeat else 1).flat_map(one_epoch)


def bottom_up_dataset(source, codec, input_size, batch_size: int, augment: bool = True,
                      shuffle: bool = True, deterministic: bool = False, seed: int = 0,
                      repeat: bool = True, num_parallel_calls=None, input_context=None,
                      augment_config: AugmentConfig | None = None, start_index: int = 0):
    """The bottom-up training (or validation, ``augment=False``) tf.data.Dataset.

    Args:
        source: ``CocoKeypoints`` (real COCO or the synthetic set), or a path to
            a person_keypoints JSON whose images sit next to it.
        codec: ``BodyPartsCodec``.
        input_size: H (square) or (H, W); multiples of 64 for 5 scales.
        batch_size: the global batch; with ``input_context`` the per-replica
            batch ``input_context.get_per_replica_batch_size(batch_size)``.
        augment, augment_config: §2.2 augmentation.
        shuffle: a new stateless permutation per epoch from (seed, epoch).
        deterministic: keep the element order of the parallel map (tests); the
            augmentation draws are per (seed, epoch, index) either way.
        repeat: loop forever (steps_per_epoch then bounds an epoch) or one pass.
        num_parallel_calls: map parallelism (default tf.data.AUTOTUNE).
        input_context: a ``tf.distribute.InputContext``; samples are sharded by
            index. Without it the DATA auto-shard policy is set for tf.distribute.
        start_index: skip this many (epoch, index) draws of the global stream
            before loading anything, so a resumed run continues where it stopped.

    Returns:
        Dataset of ``(images (B, H, W, 3) float32, (t_0, ..., t_{S-1}))``, full
        batches only, prefetched. A sample whose image is missing or broken is
        replaced by the next readable sample (logged once per file, every
        replacement counted); the loader (``num_bad``, ``bad_indices``) is
        attached as ``dataset.loader``.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if isinstance(source, (str, bytes)) or hasattr(source, "__fspath__"):
        import os
        from keras_pose.data.coco import CocoKeypoints
        source = CocoKeypoints(source, os.path.dirname(os.fspath(source)))
    loader = BottomUpLoader(source, codec, input_size, augment, augment_config, seed)
    return loader_dataset(loader, batch_size, shuffle=shuffle, deterministic=deterministic,
                          repeat=repeat, num_parallel_calls=num_parallel_calls,
                          input_context=input_context, start_index=start_index)


def loader_dataset(loader, batch_size: int, shuffle: bool = True, deterministic: bool = False,
                   repeat: bool = True, num_parallel_calls=None, input_context=None,
                   start_index: int = 0):
    """Batches of any per-batch loader as a tf.data.Dataset (``bottom_up_dataset``'s engine).

    ``loader`` has ``len()``, ``seed``, ``input_size`` (H, W), ``target_shapes``
    [(h_j, w_j, c_j)] and ``load_batch(epochs, indices) -> (images (B, H, W, 3)
    float32, [t_j (B, h_j, w_j, c_j) float32])`` (``BottomUpLoader``, the
    distillation loader). Yields ``(images, (t_0, ..., t_{S-1}))``; the other
    arguments are ``bottom_up_dataset``'s.
    """
    import tensorflow as tf

    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    autotune = tf.data.AUTOTUNE
    calls = autotune if num_parallel_calls is None else num_parallel_calls
    h, w = loader.input_size
    shapes = loader.target_shapes

    ds = _index_dataset(len(loader), shuffle, loader.seed, repeat)
    if start_index:
        ds = ds.skip(int(start_index))   # cheap: indices only, nothing is loaded
    if input_context is not None:
        ds = ds.shard(input_context.num_input_pipelines, input_context.input_pipeline_id)
        batch_size = input_context.get_per_replica_batch_size(batch_size)

    # Index batches -> one numpy_function per batch: the loader writes each sample
    # straight into aligned batch arrays, so TensorFlow neither copies nor batches.
    ds = ds.batch(batch_size, drop_remainder=True)

    def py_load(epochs, indices):
        images, targets = loader.load_batch(epochs, indices)
        return (images, *targets)

    def tf_load(epochs, indices):
        out = tf.numpy_function(py_load, [epochs, indices], [tf.float32] * (1 + len(shapes)),
                                stateful=False)
        out[0].set_shape((batch_size, h, w, 3))
        for t, shp in zip(out[1:], shapes):
            t.set_shape((batch_size,) + shp)
        return out[0], tuple(out[1:])

    ds = ds.map(tf_load, num_parallel_calls=calls, deterministic=deterministic)
    ds = ds.prefetch(autotune)

    options = tf.data.Options()
    options.deterministic = deterministic
    if input_context is None:
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    ds = ds.with_options(options)
    ds.loader = loader
    return ds


def bottom_up_eval_dataset(source, input_size, batch_size: int = 1, num_parallel_calls=None):
    """Non-augmented images for evaluation: each whole image fitted into (H, W).

    Yields ``(images (B, H, W, 3) float32 RGB 0..255, matrices (B, 2, 3) float32,
    image_ids (B,) int64)``; the matrix maps original pixels to input pixels, so
    ``poses.transform(invert_affine(M))`` brings predictions back. Pixels are
    exactly those of the inference path (``geometry.letterbox_to``:
    aspect kept, padded bottom/right); the last batch may be smaller.
    Unreadable images are skipped with a warning.
    """
    import tensorflow as tf

    h, w = (int(input_size), int(input_size)) if np.isscalar(input_size) else map(int, input_size)
    records = list(source.records)
    calls = tf.data.AUTOTUNE if num_parallel_calls is None else num_parallel_calls

    def py_load(i):
        rec = records[int(i)]
        try:
            image = load_image(rec.path)
        except ImageReadError as e:
            log.warning("skipping image %s: %s", rec.image_id, e)
            return np.bool_(False), np.zeros((h, w, 3), np.uint8), np.zeros((2, 3), np.float32), \
                np.int64(rec.image_id)
        out, M = letterbox_to(image, (h, w))
        return np.bool_(True), out, M.astype(np.float32), np.int64(rec.image_id)

    def tf_load(i):
        ok, image, m, image_id = tf.numpy_function(
            py_load, [i], [tf.bool, tf.uint8, tf.float32, tf.int64], stateful=False)
        ok.set_shape(())
        image.set_shape((h, w, 3))
        m.set_shape((2, 3))
        image_id.set_shape(())
        return ok, image, m, image_id

    ds = tf.data.Dataset.range(len(records)).map(tf_load, num_parallel_calls=calls, deterministic=True)
    ds = ds.filter(lambda ok, *rest: ok)
    ds = ds.map(lambda ok, image, m, image_id: (tf.cast(image, tf.float32), m, image_id))
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)
