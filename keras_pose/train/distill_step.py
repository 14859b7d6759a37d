"""Distillation in the training run: the dataset, and the teacher inside the step.

Shapes: student input (B, H, W, 3) float32 RGB 0..255; C = 50 map channels; per
supervision scale j the targets (B, h_j, w_j, C + 1) of ``losses.py``.

Two places for the teacher (docs/distillation.md measures both):

* ``teacher_cache`` set: the teacher runs once per training image before
  training (``distill.TeacherCache``) and the loader warps its maps; the step
  is the plain supervised step. Pays on a CPU, where a teacher pass costs as
  much as a student step.
* no cache: ``InStepTeacher`` runs inside the compiled training step on the
  exact augmented batch the student sees (on the accelerator with it), with
  the predictor's flip fusion and scales, and ``attach`` hands the finished
  targets to the compiled loss.
"""
from __future__ import annotations

import os

import numpy as np

from keras_pose.geometry import compose, invert_affine, map_affine
from keras_pose.train.distill import DistillLoader, Teacher, TeacherCache, combine_targets, \
    list_images


class DistillData:
    """The teacher, the loader and (optionally) the cache of one training run.

    Args:
        config: a resolved ``TrainConfig`` with ``teacher`` set.
        task: the ``BottomUpTask`` (student codec, input size, stacks).
        paths: ``loop.DataPaths``; with ``dataset == "images"`` the unlabeled
            images are ``paths.train_images`` and there is no labeled set.
        min_area: the labeled source's main-person area rule.
    """

    def __init__(self, config, task, paths, min_area=None):
        from keras_pose.data.pipeline import BottomUpLoader
        from keras_pose.data.transforms import AugmentConfig

        if task.name != "bottom_up":
            raise ValueError("--teacher trains bottom-up students only (task bottom_up)")
        self.config, self.task = config, task
        self.teacher = Teacher(config.teacher, config.teacher_scales, config.teacher_flip)
        augment = AugmentConfig(**config.augment) if config.augment else None
        labeled = None
        if config.dataset == "images":
            images = list_images(paths.train_images)
        else:
            source = task.source(paths.train_annotations, paths.train_images, min_area,
                                 config.bad_annotations)
            labeled = BottomUpLoader(source, task.codec, task.input_size, augment=True,
                                     augment_config=augment, seed=config.seed)
            images = list_images(config.unlabeled_dir) if config.unlabeled_dir else []
        cache = None
        if config.teacher_cache:
            probe = DistillLoader(task.codec, task.input_size, images, labeled)
            cache = TeacherCache(config.teacher_cache, self.teacher, probe.paths())
            self.cache_info = cache.build()
        self.loader = DistillLoader(task.codec, task.input_size, images, labeled, cache,
                                    augment=True, augment_config=augment, seed=config.seed,
                                    teacher_weight=config.teacher_weight,
                                    framing=config.unlabeled_framing)
        self.in_step = cache is None

    def dataset(self, start_index: int = 0):
        """(images, per-scale targets tiled over the stacks) batches."""
        from keras_pose.data.pipeline import loader_dataset

        c = self.config
        ds = loader_dataset(self.loader, c.batch_size, shuffle=True, deterministic=c.deterministic,
                            start_index=start_index)
        if self.in_step:
            return ds   # the step finishes the targets (attach)
        stacks = self.task.model_cfg.stacks
        return ds.map(lambda x, y: (x, tuple(y) * stacks))

    def attach(self, model) -> "InStepTeacher | None":
        """With no cache: make ``model``'s loss see the teacher's targets (after compile)."""
        if not self.in_step:
            return None
        step = InStepTeacher(self.teacher, self.task.input_size, self.task.codec)
        step.attach(model, self.task.model_cfg.stacks, self.config.teacher_weight)
        return step


class InStepTeacher:
    """The teacher's maps of a student batch, in TensorFlow, in the student's frames.

    For each test scale the batch is letterboxed as ``PosePredictor`` letterboxes
    an image of the student's size (the geometry is the predictor's own
    ``_frame``, fixed at trace time), the teacher runs on it and its mirror, the
    two are fused (``codec.fuse_flip``'s rule: flip back, swap left/right
    channels, average), and the maps are warped into the student's stride-s
    frame with the predictor's map affines and averaged over scales. The S
    supervision scales are 2**j average pools, as ``codec.pyramid`` builds them.
    """

    def __init__(self, teacher: Teacher, input_size, codec):
        self.teacher = teacher
        pred = teacher.predictor
        self.net = pred.net
        self.net.trainable = False
        self.codec = codec
        self.input_size = tuple(int(v) for v in input_size)
        self.stride = int(codec.config.stride)
        if int(teacher.codec.config.stride) != self.stride:
            raise ValueError(f"teacher stride {teacher.codec.config.stride} differs from the "
                             f"student's {self.stride}")
        self.perm = np.asarray(teacher.codec.spec.channel_flip_perm, np.int32)
        h, w = self.input_size
        a = map_affine(self.stride)
        self.frames = []
        for scale in teacher.scales:
            content, padded, m = pred._frame((h, w), scale)
            # teacher map cell -> student map cell (the student image is the "original")
            t = compose(a, invert_affine(compose(a, m)))
            self.frames.append((tuple(int(v) for v in content), tuple(int(v) for v in padded),
                                invert_affine(t)))   # student cell -> teacher cell (sampling)
        self.pad_value = float(pred.pad_value)
        self.flip = teacher.flip

    def maps(self, images):
        """(B, H, W, 3) float32 -> (B, H/s, W/s, C) float32 teacher maps (no gradient)."""
        import tensorflow as tf

        h, w = self.input_size
        out_h, out_w = h // self.stride, w // self.stride
        acc = None
        for (ch, cw), (ph, pw), inv in self.frames:
            x = images if (ch, cw) == (h, w) else \
                tf.clip_by_value(tf.round(tf.image.resize(images, (ch, cw), method="bicubic")),
                                 0.0, 255.0)
            if (ph, pw) != (ch, cw):
                x = tf.pad(x - self.pad_value, [[0, 0], [0, ph - ch], [0, pw - cw], [0, 0]]) \
                    + self.pad_value
            n = tf.shape(x)[0]
            if self.flip:
                x = tf.concat([x, tf.reverse(x, axis=[2])], axis=0)
            y = tf.cast(self.net(x, training=False), tf.float32)
            if self.flip:
                mirrored = tf.gather(tf.reverse(y[n:], axis=[2]), self.perm[:y.shape[-1]], axis=-1)
                y = 0.5 * (y[:n] + mirrored)
            transform = tf.constant([inv[0, 0], inv[0, 1], inv[0, 2],
                                     inv[1, 0], inv[1, 1], inv[1, 2], 0.0, 0.0], tf.float32)
            y = tf.raw_ops.ImageProjectiveTransformV3(
                images=y, transforms=tf.tile(transform[None], [n, 1]),
                output_shape=tf.constant([out_h, out_w], tf.int32),
                fill_value=tf.constant(0.0, tf.float32), interpolation="BILINEAR",
                fill_mode="NEAREST")
            acc = y if acc is None else acc + y
        return tf.stop_gradient(acc / float(len(self.frames)))

    def targets(self, images, packs, teacher_weight: float = 1.0) -> list:
        """[(B, h_j, w_j, C + 2) = [G | m | v]] -> [(B, h_j, w_j, C + 1) = [target | mask]]."""
        import tensorflow as tf

        t = self.maps(images)
        c = t.shape[-1]
        out = []
        for j, pack in enumerate(packs):
            tj = t if j == 0 else tf.nn.avg_pool2d(t, 2 ** j, 2 ** j, "VALID")
            target, mask = combine_targets(pack[..., :c], pack[..., c:c + 1], pack[..., c + 1:],
                                           tj, teacher_weight)
            out.append(tf.concat([target, mask], axis=-1))
        return out

    def attach(self, model, stacks: int, teacher_weight: float = 1.0) -> None:
        """Wrap ``model.compute_loss``: y = the loader's packs, replaced by the targets.

        The compiled loss, its weights and the optimizer step are Keras' own;
        only its ``y`` changes, inside the traced step (so on the accelerator).
        """
        base = model.compute_loss
        num_scales = int(self.codec.config.num_scales)

        def compute_loss(x=None, y=None, y_pred=None, sample_weight=None, training=True):
            packs = list(y)[:num_scales]
            y = tuple(self.targets(x, packs, teacher_weight)) * int(stacks)
            return base(x, y, y_pred, sample_weight, training=training)

        model.compute_loss = compute_loss


def describe(data: DistillData) -> dict:
    """What the run distilled from (saved in metrics.json)."""
    out = {"teacher": data.teacher.describe(), "mode": "in_step" if data.in_step else "cache",
           "samples": len(data.loader), "labeled": data.loader.num_labeled}
    if not data.in_step:
        out["cache"] = {"dir": os.path.abspath(data.config.teacher_cache), **data.cache_info}
    return out
