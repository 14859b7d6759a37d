"""COCO keypoint AP of a bottom-up model over a COCO-format image set.

The same path a user takes (``PosePredictor``: letterbox -> network ->
``BodyPartsCodec.decode`` -> original pixels), then pycocotools. This module
only reads images and drives the predictor.
"""
from __future__ import annotations

import logging
import os

from tqdm import tqdm

from keras_pose.evaluation.coco_eval import (evaluate_keypoints, load_coco_gt, print_stats,
                                             write_results)
from keras_pose.inference.predictor import PosePredictor
from keras_pose.io import ImageReadError, load_image

log = logging.getLogger(__name__)


def evaluate_bottom_up(model, codec, annotations, images_dir, input_height=None, scales=(1.0,),
                       flip: bool = False, max_images=None, batch_size: int = 8,
                       results_path=None, progress: bool = True, print_table: bool = False,
                       output=None):
    """Run ``model`` on every image of ``annotations`` and score it.

    Args:
        model: a ready ``PosePredictor`` (e.g. ``keras_pose.load(run)``), a
            network, or a bottom-up Keras model with one output.
        codec: its BodyPartsCodec.
        annotations: person_keypoints JSON (path, dict or COCO object).
        images_dir: folder holding the images' ``file_name``s.
        input_height, scales, flip, output: ``PosePredictor`` options (ignored for a
            ready predictor; docs/method_bottom_up.md §5.2); ``output`` names the
            decoded output of a training model (a RunDescriptor).
        max_images: only the first N images (sorted ids), for quick checks.
        results_path: also write the COCO results JSON there.

    Returns:
        (results, stats) - COCO results dicts and the 10 AP/AR numbers plus
        ``num_images`` and ``unreadable`` (images skipped with a warning).
    """
    gt = load_coco_gt(annotations)
    ids = sorted(gt.getImgIds())
    if max_images is not None:
        ids = ids[:int(max_images)]
    predictor = model if isinstance(model, PosePredictor) else PosePredictor(
        model, codec=codec, input_height=input_height, scales=scales, flip=flip,
        batch_size=batch_size, output=output)
    results, done, unreadable = [], [], 0
    bar = tqdm(total=len(ids), desc="evaluating", unit="img", disable=not progress)
    for start in range(0, len(ids), batch_size):
        chunk, images = [], []
        for image_id in ids[start:start + batch_size]:
            path = os.path.join(images_dir, gt.imgs[image_id]["file_name"])
            try:
                images.append(load_image(path))
                chunk.append(image_id)
            except ImageReadError as e:
                unreadable += 1
                log.warning("skipping %s", e)
        if images:
            for image_id, poses in zip(chunk, predictor.predict(images)):
                results.extend(poses.to_coco(image_id))
            done.extend(chunk)
        bar.update(len(ids[start:start + batch_size]))
    bar.close()
    # OKS with the spec's sigmas (pycocotools' kpt_oks_sigmas), K checked against the GT
    stats = evaluate_keypoints(results, gt, image_ids=done or ids,
                               sigmas=predictor.codec.spec.sigmas)
    stats.update(num_images=len(done), unreadable=unreadable, num_results=len(results))
    if results_path:
        write_results(results, results_path)
    if print_table:
        print_stats(stats)
    return results, stats
