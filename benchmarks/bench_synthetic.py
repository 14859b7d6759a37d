"""Speed of the synthetic dataset generator (one process, one core).

    python benchmarks/bench_synthetic.py [--num_images 2000] [--image_size 256] [--preset default]

Writes the images and JSON to a temporary folder (JPEG encoding and file writes
included) and prints ONE JSON object: wall and CPU seconds, images per second
by both, and annotation statistics. On a shared machine the CPU-time rate is
the figure to compare; the wall rate is what a user waits.
"""
import argparse
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import cv2  # noqa: E402

from keras_pose.data import synthetic  # noqa: E402


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--num_images", type=int, default=2000)
    p.add_argument("--image_size", type=int, default=256)
    p.add_argument("--preset", default="default")
    args = p.parse_args()
    cv2.setNumThreads(1)   # one core, as the requirement is stated
    with tempfile.TemporaryDirectory() as tmp:
        w0, c0 = time.perf_counter(), time.process_time()
        paths = synthetic.generate_dataset(tmp, args.num_images, 0, seed=0,
                                           image_size=args.image_size, config=args.preset,
                                           progress=False)
        wall, cpu = time.perf_counter() - w0, time.process_time() - c0
        doc = json.load(open(paths["train_annotations"]))
        mb = sum(os.path.getsize(os.path.join(paths["train_images"], f))
                 for f in os.listdir(paths["train_images"])) / 2**20
    anns = doc["annotations"]
    n = args.num_images
    print(json.dumps({
        "benchmark": "synthetic_generation", "preset": args.preset, "images": n,
        "image_size": args.image_size, "wall_s": round(wall, 2), "cpu_s": round(cpu, 2),
        "images_per_s_wall": round(n / wall, 1), "images_per_s_cpu": round(n / cpu, 1),
        "persons_per_image": round(sum(not a["iscrowd"] for a in anns) / n, 2),
        "keypointed_persons_per_image": round(sum(a["num_keypoints"] > 0 for a in anns) / n, 2),
        "crowd_regions": sum(a["iscrowd"] for a in anns),
        "unannotated_persons": sum(a["num_keypoints"] == 0 and not a["iscrowd"] for a in anns),
        "visible_fraction_of_labelled_keypoints": round(
            sum(v == 2 for a in anns for v in a["keypoints"][2::3])
            / max(sum(v > 0 for a in anns for v in a["keypoints"][2::3]), 1), 3),
        "jpeg_mb": round(mb, 1),
    }))


if __name__ == "__main__":
    main()
