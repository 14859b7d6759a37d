"""Grouping quality on perfect maps: the authors' assembly vs keras_pose's, side by side.

Test sets (ground truth -> ``BodyPartsCodec.encode`` -> ``decode`` -> pycocotools;
no network, so every lost point is the grouping's or the peak finder's):

* ``crowd_coco``: 12 scenes of 6-10 real COCO-sample poses in 640 x 640, heavy
  overlap (``tests/_crowd_scenes.py``);
* ``crowd_synthetic``: 12 such scenes of the synthetic generator's figures;
* ``coco_sample``: the four COCO sample images, letterboxed to height 640;
* ``synthetic_val``: the quickstart's synthetic val annotations (``--synthetic_val``,
  default runs/synthetic, where the quickstart writes it), letterboxed to height 512.

Prints one JSON object: AP and the error breakdown per set and grouping, and the
overlap statistics of the crowds.

    python benchmarks/crowd_grouping.py [--scenes 12] [--groupings paper,matched]
"""
import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import pathlib  # noqa: E402
import sys  # noqa: E402

import numpy as np  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

import _crowd_scenes as cs  # noqa: E402
from keras_pose.codecs import BodyPartsCodec, _peaks  # noqa: E402
from keras_pose.geometry import letterbox_geometry  # noqa: E402
from keras_pose.structures import apply_affine, invert_affine  # noqa: E402

SHARED = REPO.parent.parent / "shared" if (REPO.parent.parent / "shared").exists() else REPO.parent / "shared"
SAMPLE = pathlib.Path(os.environ.get("KERAS_POSE_COCO_SAMPLE", SHARED / "data" / "coco_sample"))


def _peak_xy(codec, maps):
    spec, cfg = codec.spec, codec.config
    k = maps[:, :, spec.keypoint_start:spec.keypoint_start + spec.num_internal]
    types, xy, _ = _peaks.find_peaks(k, cfg.stride, cfg.peak_threshold, cfg.refine_radius, cfg.max_candidates)
    internal = [xy[types == t] for t in range(spec.num_internal)]
    return [internal[spec.internal_to_coco.index(j)] for j in range(spec.num_keypoints)]


def evaluate_set(codec, items, dataset):
    """items: (image_id, gt (G, K, 3) in image px, affine image->input, input (H, W), content_h)."""
    results, totals = [], {}
    for image_id, gt, m, hw, content_h in items:
        kp = gt.copy()
        lab = kp[..., 2] > 0
        kp[..., :2] = np.where(lab[..., None], apply_affine(kp[..., :2], m), 0)
        maps = codec.encode(kp, hw)["heatmaps"]
        poses = codec.decode(maps, image_height=content_h)
        results += poses.transform(invert_affine(m)).to_coco(image_id)
        b = cs.breakdown(kp, poses.keypoints, _peak_xy(codec, maps))
        for key, v in b.items():
            totals[key] = totals.get(key, 0) + v
    return {"AP": round(cs.keypoint_ap(dataset, results), 5), **totals}


def crowd_items(pool, scenes, seed):
    rng = np.random.default_rng(seed)
    kps = [cs.compose_crowd(rng, pool) for _ in range(scenes)]
    ident = np.array([[1.0, 0, 0], [0, 1.0, 0]])
    items = [(i, kp, ident, (640, 640), 640) for i, kp in enumerate(kps, 1)]
    ov = np.concatenate([cs.overlap_counts(kp) for kp in kps])
    stats = {"images": scenes, "persons": int(sum(len(k) for k in kps)),
             "median_overlaps_per_person": float(np.median(ov))}
    return items, cs.coco_dataset(kps), stats


def letterboxed_items(dataset, height):
    items = []
    for img in dataset["images"]:
        anns = [a for a in dataset["annotations"]
                if a["image_id"] == img["id"] and not a.get("iscrowd") and a["num_keypoints"] > 0]
        if not anns:
            continue
        (content_h, _), hw, m = letterbox_geometry((img["height"], img["width"]), height=height, multiple=64)
        kp = np.asarray([a["keypoints"] for a in anns], np.float32).reshape(len(anns), -1, 3)
        items.append((img["id"], kp, m, hw, content_h))
    return items


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenes", type=int, default=12, help="crowded scenes per pose source")
    ap.add_argument("--groupings", default="paper,matched", help="comma-separated codec groupings")
    ap.add_argument("--synthetic_val", default="runs/synthetic",
                    help="a synthetic dataset folder (annotations/person_keypoints_val.json)")
    ap.add_argument("--sets", default="crowd_coco,crowd_synthetic,coco_sample,synthetic_val")
    args = ap.parse_args()
    sets, stats = {}, {}
    wanted = args.sets.split(",")
    if "crowd_coco" in wanted:
        items, ds, stats["crowd_coco"] = crowd_items(cs.coco_pool(SAMPLE / "test_coco.json"), args.scenes, 0)
        sets["crowd_coco"] = (items, ds)
    if "crowd_synthetic" in wanted:
        items, ds, stats["crowd_synthetic"] = crowd_items(cs.synthetic_pool(), args.scenes, 1)
        sets["crowd_synthetic"] = (items, ds)
    if "coco_sample" in wanted:
        with open(SAMPLE / "test_coco.json") as f:
            ds = json.load(f)
        sets["coco_sample"] = (letterboxed_items(ds, 640), ds)
    val = pathlib.Path(args.synthetic_val) / "annotations" / "person_keypoints_val.json"
    if "synthetic_val" in wanted and val.exists():
        with open(val) as f:
            ds = json.load(f)
        sets["synthetic_val"] = (letterboxed_items(ds, 512), ds)
    out = {"scene_stats": stats, "results": {}}
    for g in args.groupings.split(","):
        codec = BodyPartsCodec(grouping=g)
        out["results"][g] = {name: evaluate_set(codec, items, ds) for name, (items, ds) in sets.items()}
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
