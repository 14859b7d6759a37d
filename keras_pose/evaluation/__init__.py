"""Evaluation: COCO keypoint AP/AR through pycocotools (no TensorFlow needed)."""
from keras_pose.evaluation.coco_eval import (
    STAT_NAMES, evaluate_keypoints, format_stats, load_coco_gt, load_results,
    print_stats, results_from_poses, write_results,
)

__all__ = [
    "STAT_NAMES", "evaluate_keypoints", "format_stats", "load_coco_gt", "load_results",
    "print_stats", "results_from_poses", "write_results",
]
