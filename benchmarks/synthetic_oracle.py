"""Ceiling of the bottom-up representation on the synthetic set: GT maps -> decode -> AP.

    python benchmarks/synthetic_oracle.py [--images 100] [--image_size 128] \
        [--preset easy] [--sigmas 9,4.5,2.25]

Generates a val split, encodes each image's ground truth with ``BodyPartsCodec``
(one config per sigma: the limb sigma is scaled alike), decodes the perfect maps
and evaluates them with COCOeval. A model cannot beat this AP, so it says
whether the data at this size (and the codec settings) leave room for the
quickstart's AP >= 0.5. Prints ONE JSON object. Needs no TensorFlow.
"""
import argparse
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import numpy as np  # noqa: E402

from benchmarks._harness import oracle_results  # noqa: E402
from keras_pose.codecs import BodyPartsCodec  # noqa: E402
from keras_pose.data import synthetic  # noqa: E402
from keras_pose.evaluation import evaluate_keypoints, results_from_poses  # noqa: E402


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--images", type=int, default=100)
    p.add_argument("--image_size", type=int, default=128)
    p.add_argument("--preset", default="easy")
    p.add_argument("--sigmas", default="9,4.5,2.25", help="keypoint sigmas (input px) to try")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    out = {"benchmark": "synthetic_oracle_ap", "preset": args.preset, "images": args.images,
           "image_size": args.image_size, "results": []}
    with tempfile.TemporaryDirectory() as tmp:
        paths = synthetic.generate_dataset(tmp, 0, args.images, seed=args.seed,
                                           image_size=args.image_size, config=args.preset,
                                           progress=False)
        gt = json.load(open(paths["val_annotations"]))
        by_image = {im["id"]: [] for im in gt["images"]}
        for a in gt["annotations"]:
            if a["num_keypoints"] > 0 and not a["iscrowd"]:
                by_image[a["image_id"]].append(a["keypoints"])
        size = (args.image_size, args.image_size)
        for sigma in (float(s) for s in args.sigmas.split(",")):
            codec = BodyPartsCodec(sigma=sigma, limb_sigma=sigma * 7.0 / 9.0,
                                   limb_margin=max(sigma * 4.0 / 9.0, 1.0))
            t0 = time.perf_counter()
            items = ((image_id, np.asarray(kps, np.float64).reshape(-1, 17, 3), None)
                     for image_id, kps in by_image.items())
            found = oracle_results(items, codec, size)
            stats = evaluate_keypoints(results_from_poses(found), paths["val_annotations"])
            out["results"].append({"sigma": sigma, "AP": round(stats["AP"], 4),
                                   "AP50": round(stats["AP50"], 4), "AR": round(stats["AR"], 4),
                                   "seconds": round(time.perf_counter() - t0, 1)})
    print(json.dumps(out))


if __name__ == "__main__":
    main()
