"""Random poses drawn from any KeypointSpec's skeleton, and scenes of them.

Shapes: K keypoints (``spec.num_keypoints``), N persons, (H, W) image.

Used to check that a spec's body-part graph can be encoded and decoded back
(ground truth -> targets -> ``BodyPartsCodec.decode`` -> OKS AP,
``benchmarks/keypoint_roundtrip.py`` and ``tests/test_keypoint_specs.py``)
without any data set. A pose is the skeleton's shortest-path tree laid out
from its centre: every bone turns by at most ``max_turn`` degrees from its
parent bone (siblings spread evenly around that direction), with lengths drawn
in ``bone`` pixels; poses whose keypoints come closer than ``min_gap`` pixels
are redrawn. Persons sit in separate cells of a grid. Imports without
TensorFlow.
"""
from __future__ import annotations

import math

import numpy as np


def _tree(spec):
    """(root, [(parent, child), ...] parents first) over the dataset keypoints."""
    from keras_pose.keypoint_file import derive_body_parts
    limbs, redundant = derive_body_parts(spec.num_keypoints, spec.skeleton, spec.names,
                                         spec.flip_perm.tolist())
    tree = [limbs[i] for i in range(len(limbs)) if i not in set(redundant)]
    root = tree[0][0] if tree else 0
    return root, tree


def random_pose(spec, rng, bone=(10.0, 16.0), max_turn=70.0, min_gap=5.0,
                tries: int = 200) -> np.ndarray:
    """(K, 2) float64 keypoints of one pose centred on (0, 0)."""
    if not spec.skeleton:
        raise ValueError(f"spec {spec.name!r} has no skeleton to draw poses from")
    root, tree = _tree(spec)
    k = spec.num_keypoints
    for _ in range(tries):
        xy = np.zeros((k, 2))
        heading = {root: rng.uniform(0, 2 * math.pi)}
        kids = {}
        for p, c in tree:
            kids.setdefault(p, []).append(c)
        for p, c in tree:
            sib = kids[p]
            n = len(sib)
            # siblings spread around the parent's heading; a lone child bends a little
            spread = math.radians(max_turn) * (2 * sib.index(c) / (n - 1) - 1) if n > 1 else 0.0
            a = heading[p] + spread + math.radians(rng.uniform(-max_turn, max_turn)) / max(n, 2)
            heading[c] = a
            xy[c] = xy[p] + rng.uniform(*bone) * np.array([math.cos(a), math.sin(a)])
        d = np.linalg.norm(xy[:, None] - xy[None], axis=-1) + np.eye(k) * 1e9
        if d.min() >= min_gap:
            return xy - (xy.max(0) + xy.min(0)) / 2
    raise RuntimeError(f"could not draw a pose of {spec.name!r} with keypoints {min_gap} px apart")


def random_scene(spec, rng, image_size=(256, 256), grid=(2, 2), drop: float = 0.0,
                 **pose_kwargs) -> np.ndarray:
    """(N, K, 3) [x, y, v] keypoints of one person per grid cell (v = 2; ``drop``: v = 0).

    A pose that does not fit its cell (4 px margin) is redrawn.
    """
    h, w = image_size
    rows, cols = grid
    ch, cw = h / rows, w / cols
    out = []
    for r in range(rows):
        for c in range(cols):
            for _ in range(100):
                xy = random_pose(spec, rng, **pose_kwargs)
                ext = xy.max(0) - xy.min(0)
                if ext[0] <= cw - 8 and ext[1] <= ch - 8:
                    break
            else:
                raise RuntimeError("poses do not fit the grid cells; use larger cells")
            centre = np.array([(c + 0.5) * cw, (r + 0.5) * ch])
            kp = np.concatenate([xy + centre, np.full((len(xy), 1), 2.0)], axis=1)
            lost = rng.random(len(xy)) < drop
            kp[lost] = 0.0
            out.append(kp)
    return np.asarray(out, np.float32)


def coco_ground_truth(spec, scenes, image_size) -> dict:
    """A COCO keypoints dataset dict of ``scenes`` ((N, K, 3) arrays, image ids from 1)."""
    h, w = image_size
    images, anns = [], []
    for i, kps in enumerate(scenes, start=1):
        images.append({"id": i, "file_name": f"{i}.png", "height": int(h), "width": int(w)})
        for kp in kps:
            vis = kp[:, 2] > 0
            lo, hi = kp[vis, :2].min(0) - 4, kp[vis, :2].max(0) + 4
            bw, bh = (hi - lo).tolist()
            anns.append({"id": len(anns) + 1, "image_id": i, "category_id": 1, "iscrowd": 0,
                         "keypoints": [float(v) for v in kp.reshape(-1)],
                         "num_keypoints": int(vis.sum()), "area": float(bw * bh),
                         "bbox": [float(lo[0]), float(lo[1]), float(bw), float(bh)]})
    return {"images": images, "annotations": anns,
            "categories": [{"id": 1, "name": "person", "supercategory": "person",
                            "keypoints": list(spec.names),
                            "skeleton": [[a + 1, b + 1] for a, b in spec.skeleton]}]}


def roundtrip_ap(spec, num_images: int = 6, image_size=(256, 256), grid=(2, 2), seed: int = 0,
                 drop: float = 0.0, **codec_overrides) -> dict:
    """GT -> BodyPartsCodec.encode -> decode -> pycocotools AP with the spec's sigmas."""
    from keras_pose.codecs import BodyPartsCodec
    from keras_pose.evaluation.coco_eval import evaluate_keypoints
    from keras_pose.structures import Poses

    codec_overrides = {"sigma": 4.0, "limb_sigma": 3.0, **codec_overrides}
    codec = BodyPartsCodec(spec=spec, **codec_overrides)
    rng = np.random.default_rng(seed)
    scenes = [random_scene(spec, rng, image_size, grid, drop) for _ in range(num_images)]
    results = []
    for i, kps in enumerate(scenes, start=1):
        maps = codec.encode(kps, image_size)["heatmaps"]
        poses = codec.decode(maps)
        assert isinstance(poses, Poses)
        results.extend(poses.to_coco(i))
    gt = coco_ground_truth(spec, scenes, image_size)
    stats = evaluate_keypoints(results, gt, sigmas=spec.sigmas)
    stats["num_persons"] = sum(len(s) for s in scenes)
    stats["num_detected"] = len(results)
    return stats
