"""Speed of the Simple Pose target encoder (BodyPartsCodec.encode + pyramid).

Scenes are realistic: the real COCO sample persons (keypoints and segmentation
masks) are scaled, rotated, mirrored and placed on a square canvas, several per
image, with person and ignore masks warped alongside. Targets per second are
measured on ONE thread (median CPU time per call over interleaved rounds; wall
clock beside it) for the vectorised encoder and, in the same run, for the
deliberately literal reference in ``tests/_bp_encode_reference.py``, so the
ratio between them is robust to machine noise.

    python benchmarks/encode.py [--persons 6] [--sizes 512,384] [--rounds 7]

Prints one JSON object.
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import sys
import time

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import cv2  # noqa: E402
import numpy as np  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from keras_pose.codecs import BodyPartsCodec  # noqa: E402

DEFAULT_SAMPLE = REPO.parent / "shared" / "data" / "coco_sample" / "test_coco.json"


def load_people(ann_file) -> tuple:
    """Real COCO persons: list of (keypoints (17, 3), mask (h, w) uint8, bbox) and ignore regions."""
    import contextlib
    import io

    from pycocotools.coco import COCO

    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(ann_file))
    people, ignores = [], []
    for ann in coco.loadAnns(coco.getAnnIds()):
        mask = coco.annToMask(ann)
        if ann["num_keypoints"] > 0:
            kp = np.asarray(ann["keypoints"], np.float32).reshape(17, 3)
            people.append((kp, mask, np.asarray(ann["bbox"], np.float64)))
        else:
            ignores.append((mask, np.asarray(ann["bbox"], np.float64)))
    return people, ignores


def _affine(bbox, height_px, centre, angle_deg, flip) -> np.ndarray:
    """2x3 similarity: bbox centre -> centre, bbox height -> height_px, rotate, mirror."""
    bx, by, bw, bh = bbox
    scale = height_px / max(bh, 1.0)
    a = np.deg2rad(angle_deg)
    rot = np.array([[np.cos(a), np.sin(a)], [-np.sin(a), np.cos(a)]]) * scale
    if flip:
        rot = rot @ np.diag([-1.0, 1.0])
    src_c = np.array([bx + bw / 2, by + bh / 2])
    t = np.asarray(centre) - rot @ src_c
    return np.hstack([rot, t[:, None]])


_FLIP = np.array([0, 2, 1, 4, 3, 6, 5, 8, 7, 10, 9, 12, 11, 14, 13, 16, 15])


def make_scene(rng, people, ignores, size: int, num_persons: int) -> dict:
    """One canvas: keypoints (P, 17, 3), person mask and ignore mask (size, size) uint8 0/1."""
    kps = np.zeros((num_persons, 17, 3), np.float32)
    person = np.zeros((size, size), np.uint8)
    ignore = np.zeros((size, size), np.uint8)
    for i in range(num_persons):
        kp, mask, bbox = people[rng.integers(len(people))]
        m = _affine(bbox, rng.uniform(0.15, 0.65) * size, rng.uniform(0.05, 0.95, 2) * size,
                    rng.uniform(-40, 40), rng.random() < 0.5)
        pts = kp[:, :2] @ m[:, :2].T + m[:, 2]
        kps[i, :, :2] = pts
        kps[i, :, 2] = kp[:, 2]
        if m[0, 0] * m[1, 1] - m[0, 1] * m[1, 0] < 0:      # mirrored: swap left/right
            kps[i] = kps[i, _FLIP]
        person |= cv2.warpAffine(mask, m, (size, size), flags=cv2.INTER_NEAREST)
    for mask, bbox in ignores:
        if rng.random() < 0.5:
            m = _affine(bbox, rng.uniform(0.1, 0.3) * size, rng.uniform(0.1, 0.9, 2) * size, 0, False)
            ignore |= cv2.warpAffine(mask, m, (size, size), flags=cv2.INTER_NEAREST)
    person |= ignore
    return {"keypoints": kps, "person_mask": person, "ignore_mask": ignore}


def _round_time(fn, items) -> tuple:
    """(CPU seconds, wall seconds) per call for one pass over the items."""
    c0, w0 = time.process_time(), time.perf_counter()
    for it in items:
        fn(it)
    n = len(items)
    return (time.process_time() - c0) / n, (time.perf_counter() - w0) / n


def measure(impls: dict, codec, scenes, size, rounds: int) -> dict:
    """Targets per second for each implementation, rounds interleaved across them.

    The machine is shared, so each figure is 1 / the median per-call CPU time of
    `rounds` passes over the scenes (one thread: CPU time is the work done, not
    the waiting); the wall-clock median is reported beside it.
    """
    phases = {}
    for name, (encode, pyramid) in impls.items():
        def enc(sc, encode=encode):
            return encode(codec, sc["keypoints"], (size, size), sc["person_mask"], sc["ignore_mask"])
        targets = [enc(sc) for sc in scenes]
        phases[name] = {"encode": (enc, scenes),
                        "pyramid": (lambda t, pyramid=pyramid: pyramid(codec, t), targets),
                        "combined": (lambda sc, enc=enc, pyramid=pyramid: pyramid(codec, enc(sc)), scenes)}
    times = {(n, p): [] for n in phases for p in phases[n]}
    for _ in range(rounds):
        for n in phases:
            for p, (fn, items) in phases[n].items():
                times[(n, p)].append(_round_time(fn, items))
    out = {}
    for (n, p), ts in times.items():
        cpu = float(np.median([t[0] for t in ts]))
        wall = float(np.median([t[1] for t in ts]))
        out.setdefault(n, {})[f"{p}_per_s"] = round(1.0 / cpu, 1)
        out[n][f"{p}_per_s_wall"] = round(1.0 / wall, 1)
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--persons", type=int, default=6)
    ap.add_argument("--sizes", default="512,384")
    ap.add_argument("--scenes", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--ann", default=str(DEFAULT_SAMPLE))
    ap.add_argument("--no-reference", action="store_true")
    args = ap.parse_args(argv)

    cv2.setNumThreads(1)
    from keras_pose.codecs import _bp_encode
    import _bp_encode_reference as ref

    codec = BodyPartsCodec()
    people, ignores = load_people(args.ann)
    rng = np.random.default_rng(0)
    result = {"persons": args.persons, "threads": 1, "numpy": np.__version__,
              "opencv": cv2.__version__, "machine": platform.machine(), "sizes": {}}
    impls = {"vectorised": (_bp_encode.encode_targets, _bp_encode.build_pyramid)}
    if not args.no_reference:
        impls["reference"] = (ref.encode_targets, ref.build_pyramid)
    for size in (int(s) for s in args.sizes.split(",")):
        scenes = [make_scene(rng, people, ignores, size, args.persons) for _ in range(args.scenes)]
        row = measure(impls, codec, scenes, size, args.rounds)
        if "reference" in row:
            for p in ("encode", "combined"):
                row[f"speedup_{p}"] = round(row["vectorised"][f"{p}_per_s"] / row["reference"][f"{p}_per_s"], 2)
        result["sizes"][str(size)] = row
    print(json.dumps(result))


if __name__ == "__main__":
    main()
