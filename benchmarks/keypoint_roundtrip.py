"""Round-trip AP of every built-in keypoint spec: GT -> encode -> decode -> pycocotools.

Scenes are random poses drawn from each spec's skeleton (one per cell of a 3x3
grid in 256x256 images, ``keras_pose.data.skeleton_poses``); a share of the
keypoints is dropped (v = 0) to show what the redundant limbs buy when a tree
limb is missing. Three graphs per spec: the spec's own body parts, its tree
limbs alone, and the graph derived from the drawing skeleton alone
(``keypoint_file.derive_body_parts``). AP uses the spec's OKS sigmas.

  python benchmarks/keypoint_roundtrip.py [--images 8] [--drops 0,0.1,0.2] [--grouping paper]
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from keras_pose import keypoint_specs  # noqa: E402
from keras_pose.data.skeleton_poses import roundtrip_ap  # noqa: E402
from keras_pose.skeleton import KeypointSpec, load_spec  # noqa: E402


def variants(spec):
    tree = [spec.limbs[k] for k in spec.tree_limbs]
    yield "spec", spec
    yield "tree only", dataclasses.replace(spec, limbs=tuple(tree), redundant_limbs=())
    yield "derived", KeypointSpec(names=spec.names, sigmas=spec.sigmas, flip_pairs=spec.flip_pairs,
                                  skeleton=spec.skeleton, name=spec.name)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=8)
    ap.add_argument("--drops", default="0,0.1,0.2")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--grouping", default="paper", help="BodyPartsCodec grouping (paper, matched)")
    args = ap.parse_args()
    drops = [float(d) for d in args.drops.split(",")]
    rows = []
    print("| spec | graph | limbs (redundant) | " + " | ".join(f"AP drop {d:g}" for d in drops)
          + " |")
    print("|---|---|---|" + "---|" * len(drops))
    for name in keypoint_specs.BUILTIN:
        for graph, spec in variants(load_spec(name)):
            aps = [roundtrip_ap(spec, num_images=args.images, grid=(3, 3), seed=args.seed,
                                drop=d, grouping=args.grouping)["AP"] for d in drops]
            rows.append({"spec": name, "graph": graph, "limbs": spec.num_limbs,
                         "redundant": len(spec.redundant_limbs), "AP": aps})
            print(f"| {name} | {graph} | {spec.num_limbs} ({len(spec.redundant_limbs)}) | "
                  + " | ".join(f"{a:.3f}" for a in aps) + " |", flush=True)
    print(json.dumps({"drops": drops, "images": args.images, "grouping": args.grouping,
                      "rows": rows}))


if __name__ == "__main__":
    main()
