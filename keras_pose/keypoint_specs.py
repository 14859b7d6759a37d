"""Built-in keypoint specs, written as spec files (``keras_pose.keypoint_file``).

* ``coco``: COCO person keypoints (17) with the Simple Pose body parts (Li et
  al., AAAI 2020; docs/method_bottom_up.md §1): an 18-point map order with a neck synthesised from
  the shoulders, 30 limbs (17 tree + 13 redundant) in the authors' order.
* ``crowdpose``: CrowdPose (Li et al., CVPR 2019), 14 points with a labelled
  head top and neck; COCO's sigmas for the 12 limb joints and 0.079 for head
  and neck, as the CrowdPose evaluation uses.
* ``mpii``: MPII Human Pose (Andriluka et al., CVPR 2014), 16 points. MPII is
  scored with PCKh (``keras_pose.evaluation.pckh``); its sigmas (COCO's for the
  shared joints, 0.026 for pelvis, thorax, neck and head top, 0.179 for the
  shoulders) only serve OKS-based NMS and AP on COCO-format copies.
* ``ap10k``: AP-10K animal keypoints (Yu et al., NeurIPS 2021 Datasets), 17
  points in COCO format; its body parts are derived from the skeleton.

The human specs other than COCO follow the paper's COCO pattern: a tree from
the neck (thorax for MPII) along the limbs, and redundant limbs from the head to
the shoulders, shoulder to hip on each side, crossed hip to knee and hip to hip.
``docs/keypoints.md`` lists them. Imports nothing from keras_pose at module
level (``skeleton`` imports this), and no TensorFlow.
"""
from __future__ import annotations

import functools

COCO_KEYPOINT_NAMES = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear",
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow",
    "left_wrist", "right_wrist", "left_hip", "right_hip",
    "left_knee", "right_knee", "left_ankle", "right_ankle",
)
_LR = lambda *parts: [[f"left_{p}", f"right_{p}"] for p in parts]  # noqa: E731

COCO_SPEC = {
    "name": "coco",
    "keypoints": list(COCO_KEYPOINT_NAMES),
    "sigmas": [0.026, 0.025, 0.025, 0.035, 0.035, 0.079, 0.079, 0.072, 0.072,
               0.062, 0.062, 0.107, 0.107, 0.087, 0.087, 0.089, 0.089],
    "flip_pairs": _LR("eye", "ear", "shoulder", "elbow", "wrist", "hip", "knee", "ankle"),
    # COCO's annotation-file skeleton (1-based there), drawn by visualize.draw_poses.
    "skeleton": [["left_ankle", "left_knee"], ["left_knee", "left_hip"],
                 ["right_ankle", "right_knee"], ["right_knee", "right_hip"],
                 ["left_hip", "right_hip"], ["left_shoulder", "left_hip"],
                 ["right_shoulder", "right_hip"], ["left_shoulder", "right_shoulder"],
                 ["left_shoulder", "left_elbow"], ["right_shoulder", "right_elbow"],
                 ["left_elbow", "left_wrist"], ["right_elbow", "right_wrist"],
                 ["left_eye", "right_eye"], ["nose", "left_eye"], ["nose", "right_eye"],
                 ["left_eye", "left_ear"], ["right_eye", "right_ear"],
                 ["left_ear", "left_shoulder"], ["right_ear", "right_shoulder"]],
    "synthesized": {"neck": ["left_shoulder", "right_shoulder"]},
    "body_parts": {
        # The authors' CMU/OpenPose order and limb table (their config.py).
        "order": ["nose", "neck", "right_shoulder", "right_elbow", "right_wrist",
                  "left_shoulder", "left_elbow", "left_wrist", "right_hip", "right_knee",
                  "right_ankle", "left_hip", "left_knee", "left_ankle", "right_eye",
                  "left_eye", "right_ear", "left_ear"],
        "limbs": [["neck", "nose"], ["neck", "right_eye"], ["neck", "left_eye"],
                  ["neck", "right_ear"], ["neck", "left_ear"], ["nose", "right_eye"],
                  ["nose", "left_eye"], ["right_eye", "right_ear"], ["left_eye", "left_ear"],
                  ["neck", "right_shoulder"], ["right_shoulder", "right_elbow"],
                  ["right_elbow", "right_wrist"], ["neck", "left_shoulder"],
                  ["left_shoulder", "left_elbow"], ["left_elbow", "left_wrist"],
                  ["neck", "right_hip"], ["right_hip", "right_knee"],
                  ["right_knee", "right_ankle"], ["neck", "left_hip"], ["left_hip", "left_knee"],
                  ["left_knee", "left_ankle"], ["nose", "right_shoulder"],
                  ["nose", "left_shoulder"], ["right_shoulder", "right_hip"],
                  ["right_hip", "left_knee"], ["left_shoulder", "left_hip"],
                  ["left_hip", "right_knee"], ["right_ear", "right_shoulder"],
                  ["left_ear", "left_shoulder"], ["right_hip", "left_hip"]],
        "redundant": [["neck", "right_eye"], ["neck", "left_eye"], ["neck", "right_ear"],
                      ["neck", "left_ear"], ["nose", "right_shoulder"],
                      ["nose", "left_shoulder"], ["right_shoulder", "right_hip"],
                      ["right_hip", "left_knee"], ["left_shoulder", "left_hip"],
                      ["left_hip", "right_knee"], ["right_ear", "right_shoulder"],
                      ["left_ear", "left_shoulder"], ["right_hip", "left_hip"]],
    },
    "loss_weights": {"keypoints": 3.0, "person_mask": 0.1},
}


def _human_limbs(top: str, head: str, extra_tree=(), hip_root: str | None = None) -> dict:
    """Tree from ``top`` (neck / thorax) plus the paper-style redundant limbs."""
    hips = hip_root or top
    tree = [[top, head], *extra_tree]
    for side in ("right", "left"):
        tree += [[top, f"{side}_shoulder"], [f"{side}_shoulder", f"{side}_elbow"],
                 [f"{side}_elbow", f"{side}_wrist"]]
    for side in ("right", "left"):
        tree += [[hips, f"{side}_hip"], [f"{side}_hip", f"{side}_knee"],
                 [f"{side}_knee", f"{side}_ankle"]]
    redundant = [[head, "right_shoulder"], [head, "left_shoulder"],
                 ["right_shoulder", "right_hip"], ["right_hip", "left_knee"],
                 ["left_shoulder", "left_hip"], ["left_hip", "right_knee"],
                 ["right_hip", "left_hip"]]
    return {"limbs": tree + redundant, "redundant": redundant}


CROWDPOSE_SPEC = {
    "name": "crowdpose",
    "keypoints": ["left_shoulder", "right_shoulder", "left_elbow", "right_elbow",
                  "left_wrist", "right_wrist", "left_hip", "right_hip", "left_knee",
                  "right_knee", "left_ankle", "right_ankle", "head", "neck"],
    "sigmas": [0.079, 0.079, 0.072, 0.072, 0.062, 0.062, 0.107, 0.107, 0.087, 0.087,
               0.089, 0.089, 0.079, 0.079],
    "flip_pairs": _LR("shoulder", "elbow", "wrist", "hip", "knee", "ankle"),
    "skeleton": [["left_ankle", "left_knee"], ["left_knee", "left_hip"],
                 ["right_ankle", "right_knee"], ["right_knee", "right_hip"],
                 ["left_hip", "right_hip"], ["left_shoulder", "left_hip"],
                 ["right_shoulder", "right_hip"], ["left_shoulder", "right_shoulder"],
                 ["left_shoulder", "left_elbow"], ["right_shoulder", "right_elbow"],
                 ["left_elbow", "left_wrist"], ["right_elbow", "right_wrist"],
                 ["head", "neck"], ["right_shoulder", "neck"], ["left_shoulder", "neck"]],
    "body_parts": _human_limbs("neck", "head"),
}

MPII_SPEC = {
    "name": "mpii",
    "keypoints": ["right_ankle", "right_knee", "right_hip", "left_hip", "left_knee",
                  "left_ankle", "pelvis", "thorax", "upper_neck", "head_top", "right_wrist",
                  "right_elbow", "right_shoulder", "left_shoulder", "left_elbow", "left_wrist"],
    "sigmas": [0.089, 0.083, 0.107, 0.107, 0.083, 0.089, 0.026, 0.026, 0.026, 0.026,
               0.062, 0.072, 0.179, 0.179, 0.072, 0.062],
    "flip_pairs": _LR("ankle", "knee", "hip", "wrist", "elbow", "shoulder"),
    "skeleton": [["right_ankle", "right_knee"], ["right_knee", "right_hip"],
                 ["right_hip", "pelvis"], ["pelvis", "left_hip"], ["left_hip", "left_knee"],
                 ["left_knee", "left_ankle"], ["pelvis", "thorax"], ["thorax", "upper_neck"],
                 ["upper_neck", "head_top"], ["right_wrist", "right_elbow"],
                 ["right_elbow", "right_shoulder"], ["right_shoulder", "thorax"],
                 ["thorax", "left_shoulder"], ["left_shoulder", "left_elbow"],
                 ["left_elbow", "left_wrist"]],
    # thorax -> upper neck -> head top; the hips hang from the pelvis.
    "body_parts": _human_limbs("thorax", "upper_neck",
                               extra_tree=[["upper_neck", "head_top"], ["thorax", "pelvis"]],
                               hip_root="pelvis"),
}

AP10K_SPEC = {
    "name": "ap10k",
    "keypoints": ["left_eye", "right_eye", "nose", "neck", "root_of_tail", "left_shoulder",
                  "left_elbow", "left_front_paw", "right_shoulder", "right_elbow",
                  "right_front_paw", "left_hip", "left_knee", "left_back_paw", "right_hip",
                  "right_knee", "right_back_paw"],
    "sigmas": [0.025, 0.025, 0.026, 0.035, 0.035, 0.079, 0.072, 0.062, 0.079, 0.072,
               0.062, 0.107, 0.087, 0.089, 0.107, 0.087, 0.089],
    "flip_pairs": _LR("eye", "shoulder", "elbow", "front_paw", "hip", "knee", "back_paw"),
    "skeleton": [["left_eye", "right_eye"], ["left_eye", "nose"], ["right_eye", "nose"],
                 ["nose", "neck"], ["neck", "root_of_tail"], ["neck", "left_shoulder"],
                 ["left_shoulder", "left_elbow"], ["left_elbow", "left_front_paw"],
                 ["neck", "right_shoulder"], ["right_shoulder", "right_elbow"],
                 ["right_elbow", "right_front_paw"], ["root_of_tail", "left_hip"],
                 ["left_hip", "left_knee"], ["left_knee", "left_back_paw"],
                 ["root_of_tail", "right_hip"], ["right_hip", "right_knee"],
                 ["right_knee", "right_back_paw"]],
    # no body_parts: derived from the skeleton (keypoint_file.derive_body_parts)
}

BUILTIN = {"coco": COCO_SPEC, "crowdpose": CROWDPOSE_SPEC, "mpii": MPII_SPEC,
           "ap10k": AP10K_SPEC}


@functools.lru_cache(maxsize=None)
def get(name: str):
    """The built-in KeypointSpec ``name`` (coco, crowdpose, mpii, ap10k)."""
    from keras_pose.keypoint_file import from_file_dict
    if name not in BUILTIN:
        raise ValueError(f"unknown keypoint spec {name!r}; built-in: {', '.join(BUILTIN)}")
    return from_file_dict(BUILTIN[name], f"built-in spec {name!r}")
