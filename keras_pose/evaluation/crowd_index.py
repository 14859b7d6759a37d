"""CrowdPose's split of AP by crowd index (Li et al., "CrowdPose", CVPR 2019, Sec. 3).

The CrowdPose benchmark reports AP on three image groups by their crowd index
(for each person, the share of other persons' joints inside its box, averaged
over the image; stored as ``crowdIndex`` on each image of its annotation file):
easy (<= 0.1), medium (0.1-0.8], hard (> 0.8). Here each group is scored by
pycocotools (``coco_eval.evaluate_keypoints`` restricted to the group's images)
with the spec's sigmas. The official ``crowdposetools`` also drops COCO's
area ranges; its AP can differ from pycocotools' in small details, so quote
these numbers as pycocotools on CrowdPose, not as the official tool's.
Imports without TensorFlow.
"""
from __future__ import annotations

from keras_pose.evaluation.coco_eval import evaluate_keypoints, load_coco_gt

BUCKETS = (("easy", 0.0, 0.1), ("medium", 0.1, 0.8), ("hard", 0.8, 1.0))


def crowd_index_groups(gt) -> dict:
    """{"easy"|"medium"|"hard": [image ids]} from the images' ``crowdIndex``; {} without it."""
    gt = load_coco_gt(gt)
    groups = {name: [] for name, _, _ in BUCKETS}
    seen = False
    for img in gt.dataset.get("images", []):
        ci = img.get("crowdIndex")
        if ci is None:
            continue
        seen = True
        for name, lo, hi in BUCKETS:
            if (lo < ci <= hi) or (lo == 0.0 and ci <= hi):
                groups[name].append(int(img["id"]))
                break
    return groups if seen else {}


def evaluate_by_crowd_index(results, gt, sigmas, image_ids=None) -> dict:
    """{"AP_easy", "AP_medium", "AP_hard"} (-1 for an empty group); {} when no image has
    a crowd index. ``image_ids``: restrict to the images that were run."""
    gt = load_coco_gt(gt)
    keep = None if image_ids is None else {int(i) for i in image_ids}
    out = {}
    for name, ids in crowd_index_groups(gt).items():
        ids = [i for i in ids if keep is None or i in keep]
        mine = [r for r in results if int(r["image_id"]) in set(ids)]
        out[f"AP_{name}"] = evaluate_keypoints(mine, gt, image_ids=ids, sigmas=sigmas)["AP"] \
            if ids else -1.0
    return out
