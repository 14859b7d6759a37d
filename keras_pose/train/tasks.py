"""Task adapters: what differs between bottom-up and top-down training.

A task knows, from the model config, its codec, its training source and
``tf.data`` pipeline, its compiled losses and its evaluator. ``train_lib`` and
``training/evaluate.py`` only talk to this interface, so the model code stays
free of losses and the loss free of data.
"""
from __future__ import annotations

from keras_pose.data.coco import MIN_MAIN_AREA, CocoKeypoints
from keras_pose.data.pipeline import bottom_up_dataset
from keras_pose.data.topdown_pipeline import topdown_dataset
from keras_pose.data.transforms import AugmentConfig
from keras_pose.descriptor import build_codec, describe
from keras_pose.evaluation.bottom_up import evaluate_bottom_up
from keras_pose.evaluation.coco_eval import print_stats
from keras_pose.evaluation.topdown import evaluate_topdown
from keras_pose.inference.loader import predictor_for
from keras_pose.losses import DEFAULT_SCALE_WEIGHTS, bottom_up_loss_weights, get_loss


class BottomUpTask:
    """Simple Pose: IMHN + BodyPartsCodec + focal L2 over stacks x scales."""

    name = "bottom_up"

    def __init__(self, model_cfg, codec=None, preset=None, spec=None):
        _describe(self, model_cfg, codec, preset, spec)

    def source(self, annotations, images_dir, main_min_area=None, bad_annotations="skip"):
        return _source(self.codec.spec, annotations, images_dir, main_min_area, bad_annotations)

    def dataset(self, source, config, start_index: int = 0):
        stacks = self.model_cfg.stacks
        augment = getattr(config, "augment", None)
        ds = bottom_up_dataset(source, self.codec, self.input_size, config.batch_size,
                               augment=True, shuffle=True, deterministic=config.deterministic,
                               seed=config.seed, start_index=start_index,
                               augment_config=AugmentConfig(**augment) if augment else None)
        # The pipeline yields one target per scale; every stack is supervised (§3.4).
        return ds.map(lambda x, y: (x, tuple(y) * stacks))

    def losses(self, name, model):
        n = len(model.outputs)
        weights = bottom_up_loss_weights(self.model_cfg.stacks,
                                         DEFAULT_SCALE_WEIGHTS[:self.model_cfg.num_scales])
        # channel weights follow the spec's layout (limbs 1, keypoints 3, mask 0.1, max 1)
        return [get_loss(name, channel_weights=self.codec.spec.channel_weights())] * n, weights

    def evaluator(self, annotations, images_dir, config):
        def evaluate(model, verbose=False):
            predictor = predictor_for(model, self.descriptor, scales=config.eval_scales or (1.0,),
                                      flip=config.eval_flip)
            _, stats = evaluate_bottom_up(predictor, self.codec, annotations, images_dir,
                                          max_images=config.eval_max_images,
                                          progress=verbose, print_table=verbose)
            return stats
        return evaluate


class TopDownTask:
    """FasterPose / SimpleBaseline: person crops + HeatmapCodec + RCE or MSE."""

    name = "top_down"

    def __init__(self, model_cfg, codec=None, preset=None, spec=None):
        _describe(self, model_cfg, codec, preset, spec)

    def source(self, annotations, images_dir, main_min_area=None, bad_annotations="skip"):
        return _source(self.codec.spec, annotations, images_dir, main_min_area, bad_annotations)

    def dataset(self, source, config, start_index: int = 0):
        return topdown_dataset(source, self.codec, config.batch_size, training=True,
                               deterministic=config.deterministic, seed=config.seed,
                               start_index=start_index)

    def losses(self, name, model):
        return get_loss(name), None

    def evaluator(self, annotations, images_dir, config, boxes="gt"):
        def evaluate(model, verbose=False):
            predictor = predictor_for(model, self.descriptor, flip=config.eval_flip)
            _, stats = evaluate_topdown(predictor, self.codec, annotations, images_dir,
                                        boxes=boxes, max_images=config.eval_max_images,
                                        progress=verbose)
            if verbose:
                print_stats(stats)
            return stats
        return evaluate


def _describe(task, model_cfg, codec, preset, spec=None):
    """The run descriptor (written once, here) and the codec built from it."""
    task.model_cfg = model_cfg
    task.input_size = tuple(model_cfg.input_size)
    task.descriptor = describe(model_cfg, codec, spec=spec, preset=preset)
    task.codec = build_codec(task.descriptor)
    spec = task.codec.spec
    have, want = (model_cfg.out_channels, spec.num_channels) if model_cfg.task == "bottom_up" \
        else (model_cfg.num_keypoints, spec.num_keypoints)
    if have != want:
        raise ValueError(f"the model head has {have} output channels but keypoint spec "
                         f"{spec.name!r} needs {want} (size it with presets.for_spec)")


def get_task(name: str, model_cfg, codec=None, preset=None, spec=None):
    """The task adapter; ``codec``: codec field overrides or a saved codec config;
    ``spec``: the KeypointSpec (default: the saved codec's, else COCO); the model
    config's head must match it (``presets.for_spec``)."""
    tasks = {"bottom_up": BottomUpTask, "top_down": TopDownTask}
    if name not in tasks:
        raise ValueError(f"unknown task {name!r}")
    if model_cfg.task != name:
        want = "an IMHN preset" if name == "bottom_up" else "a fasterpose_* or simple_baseline_* preset"
        raise ValueError(f"task {name} needs {want}, got {type(model_cfg).__name__}")
    return tasks[name](model_cfg, codec, preset, spec)


def _source(spec, annotations, images_dir, main_min_area, bad_annotations="skip"):
    """The COCO-format reader; its annotations are checked against the spec's K."""
    return CocoKeypoints(annotations, images_dir,
                         MIN_MAIN_AREA if main_min_area is None else main_min_area,
                         bad_annotations=bad_annotations, spec=spec)
