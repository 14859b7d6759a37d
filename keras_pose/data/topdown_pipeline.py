"""tf.data input for top-down models: person box -> crop -> heatmap targets.

Shapes: B batch, H x W crop (the model input, e.g. 256 x 192), h x w heatmaps,
K keypoints.

``topdown_dataset`` yields ``(images (B, H, W, 3) float32 RGB 0..255,
targets (B, h, w, 2K) float32)`` with targets = concat(heatmaps, per-joint
weights broadcast) - what ``RCELoss`` / ``HeatmapMSELoss`` split in half
(``docs/method_top_down.md`` §2.4, §3.4). One sample per annotated person (non-crowd,
num_keypoints > 0, usable box); training crops are augmented (rotation,
scale, flip; ``data.crops``).

The per-sample work (``TopDownLoader``) is NumPy + OpenCV and runs inside
``tf.numpy_function``; TensorFlow is imported only when a dataset is built.
"""
from __future__ import annotations

import dataclasses
import logging
import threading
from typing import List, Optional

import numpy as np

from keras_pose.codecs.heatmap import HeatmapCodec
from keras_pose.data.crops import CropAugmentConfig, box_problem, topdown_crop
from keras_pose.data.pipeline import _index_dataset  # the same (epoch, index) stream
from keras_pose.io import ImageReadError, load_image

log = logging.getLogger(__name__)


@dataclasses.dataclass
class PersonSample:
    """One training person: image, box [x, y, w, h] and (K, 3) keypoints in image pixels."""

    image_id: int
    path: str
    box: np.ndarray
    keypoints: np.ndarray


def person_samples(source) -> tuple:
    """(samples, counts) from a ``CocoKeypoints``: non-crowd persons with keypoints.

    counts: {"samples", "crowd", "no_keypoints", "bad_box"} - skipped boxes are
    counted, never fatal.
    """
    samples: List[PersonSample] = []
    counts = {"samples": 0, "crowd": 0, "no_keypoints": 0, "bad_box": 0}
    for rec in source.records:
        p = rec.persons
        for i in range(len(p)):
            if p.iscrowd[i]:
                counts["crowd"] += 1
            elif p.num_keypoints[i] <= 0:
                counts["no_keypoints"] += 1
            elif box_problem(p.boxes[i], (rec.height, rec.width)) is not None:
                counts["bad_box"] += 1
            else:
                samples.append(PersonSample(rec.image_id, rec.path, np.asarray(p.boxes[i], np.float64),
                                            np.asarray(p.keypoints[i], np.float64)))
    counts["samples"] = len(samples)
    return samples, counts


class TopDownLoader:
    """The per-sample work of the top-down pipeline, without TensorFlow.

    Args:
        source: a ``CocoKeypoints`` (real COCO or the synthetic set).
        codec: the HeatmapCodec (input and heatmap sizes, K, flip permutation).
        augment: random rotation / scale / flip (``augment_config``).
        seed: sample (epoch, index) draws from rng([seed, epoch, index]), so its
            augmentation does not depend on threads or on the element order.
    """

    def __init__(self, source, codec: HeatmapCodec, augment: bool = True,
                 augment_config: Optional[CropAugmentConfig] = None, seed: int = 0,
                 padding: float = 1.25):
        if seed < 0:
            raise ValueError(f"seed must be >= 0, got {seed}")
        self.codec = codec
        self.augment = augment
        self.augment_config = augment_config or CropAugmentConfig()
        self.augment_config.validate()
        self.seed = int(seed)
        self.padding = padding
        self.samples, self.counts = person_samples(source)
        if not self.samples:
            raise ValueError(f"{source!r} has no usable person boxes ({self.counts})")
        if sum(v for k, v in self.counts.items() if k != "samples"):
            log.info("top-down samples: %s", self.counts)
        self.num_bad = 0
        self._lock = threading.Lock()
        K = codec.num_keypoints
        self.target_shape = tuple(codec.heatmap_size) + (2 * K,)
        self.image_shape = tuple(codec.input_size) + (3,)

    def __len__(self) -> int:
        return len(self.samples)

    def load(self, epoch: int, index: int):
        """One sample -> (ok, crop (H, W, 3) float32, targets (h, w, 2K) float32, matrix (2, 3)).

        An unreadable image gives ok = False with zero arrays (filtered out by
        the dataset) and is counted in ``num_bad``.
        """
        s = self.samples[int(index)]
        try:
            image = load_image(s.path)
        except ImageReadError as e:
            with self._lock:
                self.num_bad += 1
            log.warning("skipping top-down sample %d: %s", int(index), e)
            return (False, np.zeros(self.image_shape, np.float32),
                    np.zeros(self.target_shape, np.float32), np.zeros((2, 3)))
        rng = np.random.default_rng([self.seed, int(epoch), int(index)]) if self.augment else None
        crop, kp, m = topdown_crop(image, s.keypoints, s.box, self.codec.input_size,
                                   flip_perm=self.codec.spec.flip_perm, rng=rng,
                                   augment=self.augment_config if self.augment else None,
                                   padding=self.padding)
        targets = self.codec.pack_targets(self.codec.encode(kp))
        return True, crop.astype(np.float32), targets, m


def topdown_dataset(source, codec: HeatmapCodec, batch_size: int, training: bool = True,
                    shuffle: Optional[bool] = None, repeat: Optional[bool] = None,
                    deterministic: bool = False, seed: int = 0, num_parallel_calls=None,
                    augment_config: Optional[CropAugmentConfig] = None,
                    input_context=None, start_index: int = 0):
    """The top-down tf.data.Dataset.

    Args:
        source: a ``CocoKeypoints``, or a path to a COCO keypoints JSON whose
            images sit next to it (use ``CocoKeypoints(ann, images_dir)`` otherwise).
        codec: HeatmapCodec.
        batch_size: global batch (per replica with ``input_context``).
        training: augment, shuffle, repeat and drop the remainder; otherwise
            one ordered pass with the last partial batch kept.
        deterministic: keep the parallel map's order (the draws are per
            (seed, epoch, index) either way).
        start_index: skip this many (epoch, index) draws of the sample stream
            before loading anything, so a resumed run continues where it stopped.

    Returns:
        Dataset of ``(images (B, H, W, 3) float32, targets (B, h, w, 2K) float32)``,
        prefetched; the loader (counts, num_bad) is attached as ``dataset.loader``.
    """
    import tensorflow as tf

    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if isinstance(source, (str, bytes)) or hasattr(source, "__fspath__"):
        import os
        from keras_pose.data.coco import CocoKeypoints
        source = CocoKeypoints(source, os.path.dirname(os.fspath(source)))
    shuffle = training if shuffle is None else shuffle
    repeat = training if repeat is None else repeat
    loader = TopDownLoader(source, codec, augment=training, augment_config=augment_config, seed=seed)
    calls = tf.data.AUTOTUNE if num_parallel_calls is None else num_parallel_calls

    ds = _index_dataset(len(loader), shuffle, loader.seed, repeat)
    if start_index < 0:
        raise ValueError(f"start_index must be >= 0, got {start_index}")
    if start_index:
        ds = ds.skip(int(start_index))   # cheap: indices only, nothing is loaded
    if input_context is not None:
        ds = ds.shard(input_context.num_input_pipelines, input_context.input_pipeline_id)
        batch_size = input_context.get_per_replica_batch_size(batch_size)

    def py_load(epoch, index):
        ok, crop, targets, _ = loader.load(int(epoch), int(index))
        return np.bool_(ok), crop, targets

    def tf_load(epoch, index):
        ok, crop, targets = tf.numpy_function(py_load, [epoch, index],
                                              [tf.bool, tf.float32, tf.float32], stateful=False)
        ok.set_shape(())
        crop.set_shape(loader.image_shape)
        targets.set_shape(loader.target_shape)
        return ok, crop, targets

    ds = ds.map(tf_load, num_parallel_calls=calls, deterministic=deterministic)
    ds = ds.filter(lambda ok, crop, targets: ok)
    ds = ds.map(lambda ok, crop, targets: (crop, targets))
    ds = ds.batch(batch_size, drop_remainder=training).prefetch(tf.data.AUTOTUNE)
    options = tf.data.Options()
    options.deterministic = deterministic
    if input_context is None:
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    ds = ds.with_options(options)
    ds.loader = loader
    return ds
