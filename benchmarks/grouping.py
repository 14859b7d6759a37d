"""Decode speed of BodyPartsCodec (peaks + limb scoring + grouping) vs a literal reference.

Maps are rendered with the codec's encoder from jittered real COCO poses (the
sample's annotations, rescaled, mirrored, rotated and placed at random in a
512 x 512 input, i.e. 128 x 128 maps), plus pure-noise maps (uniform [0, 1) on
every channel: the worst case for the candidate cap). Each case is decoded by
``BodyPartsCodec.decode`` and by ``tests/_reference_decoder.reference_decode``
(full-resolution cv2 bicubic upsampling, per-peak and per-pair Python loops,
the authors' grouping literally) on the same maps in the same run, single thread.

Prints one JSON object: median decode ms per case for both, the speed ratio,
parity (persons and max keypoint difference; for noise the reference keeps the
same candidate cap, and some weak ringing maxima our seeds skip, see
``keras_pose/codecs/_peaks.py``), and the speed-up over the authors' reported
pure-Python grouping rate (5.2 img/s, docs/method_bottom_up.md §7). Wall and CPU
(process) times are both given: on a shared machine CPU time is the steadier.

    python benchmarks/grouping.py [--repeats 15] [--scenes 5]

``--assemblies`` instead times the two person assemblies (``grouping="paper"``
and ``"matched"``, docs/grouping.md) and ``"matched"`` without the compiled
loops (``keras_pose/codecs/_kernels.py``, the NumPy paths) against each other,
interleaved call by call on the same maps, at 512 x 512 and 256 x 256 inputs
(1, 6, 24 persons and noise), and prints the medians and their ratios:

    nice -n 10 python benchmarks/grouping.py --assemblies [--repeats 15] [--scenes 5]

``--pair_caps`` times ``matched`` at ``max_limb_pairs`` 0 (no cap), 30 000 (the
default), 20 000 and 10 000 on noise and 24-person crowds, and scores it on noisy
24-person crowds (docs/grouping.md).
"""
import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import pathlib  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from _reference_decoder import jittered_scene, reference_decode, sample_poses  # noqa: E402
from keras_pose.codecs import BodyPartsCodec, _assembly, _grouping, _kernels, _peaks  # noqa: E402

AUTHORS_IMG_PER_S = 5.2
SAMPLE = pathlib.Path(os.environ.get("KERAS_POSE_COCO_SAMPLE", REPO.parent / "shared" / "data" / "coco_sample"))


def _time(fn, maps_list, repeats):
    """Median wall and CPU (process) ms per call, and the last pass's outputs."""
    wall, cpu, outs = [], [], []
    for r in range(repeats):
        for m in maps_list:
            t0, c0 = time.perf_counter(), time.process_time()
            res = fn(m)
            cpu.append(time.process_time() - c0)
            wall.append(time.perf_counter() - t0)
            if r == repeats - 1:
                outs.append(res)
    return 1e3 * float(np.median(wall)), 1e3 * float(np.median(cpu)), outs


def _kernels_on(flag: bool) -> None:
    """Switch the decoder's compiled loops (keras_pose/codecs/_kernels.py) on or off."""
    for module in (_peaks, _grouping, _assembly):
        module.USE_KERNELS = flag and _kernels.AVAILABLE


def compare_assemblies(args, poses):
    """Median decode ms of both assemblies and of ``matched`` on the NumPy paths (no
    compiled loops), interleaved call by call, per input size and case."""
    codecs = {g: BodyPartsCodec(grouping=g) for g in ("paper", "matched")}
    variants = [("paper", codecs["paper"], True), ("matched", codecs["matched"], True),
                ("matched_numpy", codecs["matched"], False)]
    rng = np.random.default_rng(0)
    out = {"threads": 1, "scenes_per_case": args.scenes, "numba": _kernels.AVAILABLE,
           "max_limb_pairs": codecs["matched"].config.max_limb_pairs,
           "load_average_start": os.getloadavg()[0]}
    for size in (512, 256):
        hi = (0.27 * size, 0.59 * size)   # 140-300 px persons at 512, scaled at 256
        table = {}
        for n in (1, 6, 24, "noise"):
            if n == "noise":
                maps = [rng.random((size // 4, size // 4, 50), dtype=np.float32)
                        for _ in range(max(1, args.scenes // 2))]
            else:
                maps = [codecs["paper"].encode(jittered_scene(rng, poses, n, size=(size, size),
                                                              height_range=hi), (size, size))["heatmaps"]
                        for _ in range(args.scenes)]
            times = {v[0]: [] for v in variants}
            persons = {v[0]: [] for v in variants}
            for m in maps:   # warm-up outside the timing (and the kernels' first compile)
                for _, c, k in variants:
                    _kernels_on(k)
                    c.decode(m)
            for r in range(args.repeats if n != "noise" else max(3, args.repeats // 3)):
                for m in maps:
                    for name, c, k in variants:
                        _kernels_on(k)
                        c0 = time.process_time()
                        res = c.decode(m)
                        times[name].append(time.process_time() - c0)
                        if r == 0:
                            persons[name].append(len(res))
            _kernels_on(True)
            med = {g: 1e3 * float(np.median(t)) for g, t in times.items()}
            table[f"persons_{n}" if n != "noise" else "noise"] = {
                **{f"{g}_cpu_ms": round(v, 2) for g, v in med.items()},
                "matched_over_paper": round(med["matched"] / med["paper"], 2),
                "numpy_over_compiled": round(med["matched_numpy"] / med["matched"], 2),
                "persons_found": {g: int(np.sum(p)) for g, p in persons.items()}}
        out[f"{size}x{size}"] = table
    out["load_average_end"] = os.getloadavg()[0]
    print(json.dumps(out, indent=1))


def compare_pair_caps(args, poses):
    """``matched`` at several ``max_limb_pairs`` (0: no cap): median decode ms on noise
    and 24-person crowds (interleaved, 512 and 256 inputs), and AP on 24-person crowds
    whose perfect maps were blurred, scaled by 0.6-1 and given Gaussian noise of
    sigma 0.01-0.03 (a network's look; the noisier, the more candidate pairs)."""
    import cv2
    import _crowd_scenes as cs

    caps = (0, 30_000, 20_000, 10_000)
    codecs = {c: BodyPartsCodec(max_limb_pairs=c) for c in caps}
    rng = np.random.default_rng(0)
    out = {"threads": 1, "load_average_start": os.getloadavg()[0]}
    for size in (512, 256):
        hi = (0.27 * size, 0.59 * size)
        cases = {"noise": [rng.random((size // 4, size // 4, 50), dtype=np.float32) for _ in range(2)],
                 "persons_24": [codecs[0].encode(jittered_scene(rng, poses, 24, size=(size, size),
                                                                height_range=hi), (size, size))["heatmaps"]
                                for _ in range(4)]}
        for name, maps in cases.items():
            times = {c: [] for c in caps}
            for m in maps:
                for c in codecs.values():
                    c.decode(m)
            for _ in range(args.repeats):
                for m in maps:
                    for cap, c in codecs.items():
                        c0 = time.process_time()
                        c.decode(m)
                        times[cap].append(time.process_time() - c0)
            out[f"{size}x{size} {name}"] = {f"cap_{c}_cpu_ms": round(1e3 * float(np.median(t)), 2)
                                            for c, t in times.items()}
    for sigma in (0.01, 0.02, 0.03):
        rng = np.random.default_rng(7)
        scenes, maps = [], []
        for _ in range(12):
            kp = jittered_scene(rng, poses, 24, size=(512, 512), height_range=(138, 302))
            m = codecs[0].encode(kp, (512, 512))["heatmaps"]
            m = cv2.GaussianBlur(m, (5, 5), 1.0) * rng.uniform(0.6, 1.0) + rng.normal(0, sigma, m.shape)
            scenes.append(kp)
            maps.append(m.astype(np.float32))
        dataset = cs.coco_dataset(scenes, size=(512, 512))
        out[f"noisy crowds sigma {sigma} AP"] = {
            f"cap_{cap}": round(cs.keypoint_ap(dataset, [r for i, m in enumerate(maps, 1)
                                                         for r in c.decode(m).to_coco(i)]), 4)
            for cap, c in codecs.items()}
    out["load_average_end"] = os.getloadavg()[0]
    print(json.dumps(out, indent=1))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--assemblies", action="store_true",
                    help="time grouping='paper' against grouping='matched' (no reference decoder)")
    ap.add_argument("--pair_caps", action="store_true",
                    help="matched at max_limb_pairs 0 / 30000 / 20000 / 10000: time on noise and 24 "
                         "persons, AP on noisy 24-person crowds")
    ap.add_argument("--repeats", type=int, default=15, help="timed passes over the scenes (fast decoder)")
    ap.add_argument("--scenes", type=int, default=5, help="different scenes per person count")
    ap.add_argument("--ref_repeats", type=int, default=1, help="timed passes for the reference")
    args = ap.parse_args()
    cv2.setNumThreads(1)
    # the reference is the authors' assembly without the pair cap (it keeps only max_candidates)
    codec = BodyPartsCodec(grouping="paper", max_limb_pairs=0)
    poses = sample_poses(SAMPLE / "test_coco.json")
    if args.assemblies:
        return compare_assemblies(args, poses)
    if args.pair_caps:
        return compare_pair_caps(args, poses)
    rng = np.random.default_rng(0)
    cases = {}
    for n in (1, 6, 12, 24):
        cases[f"persons_{n}"] = [codec.encode(jittered_scene(rng, poses, n), (512, 512))["heatmaps"]
                                 for _ in range(args.scenes)]
    cases["noise"] = [rng.random((128, 128, 50), dtype=np.float32) for _ in range(max(1, args.scenes // 2))]
    out = {"input": "512x512 (128x128x50 maps)", "threads": 1, "scenes_per_case": args.scenes,
           "load_average_start": os.getloadavg()[0],
           "fast_ms": {}, "fast_cpu_ms": {}, "reference_ms": {}, "reference_cpu_ms": {},
           "speedup": {}, "speedup_cpu": {}, "parity": {}}
    for name, maps_list in cases.items():
        for m in maps_list:  # warm caches (tap tables) outside the timing
            codec.decode(m)
        wall, cpu, fast = _time(codec.decode, maps_list, args.repeats)
        out["fast_ms"][name], out["fast_cpu_ms"][name] = round(wall, 3), round(cpu, 3)
        cap = codec.config.max_candidates if name == "noise" else None
        ref = lambda m, cap=cap: reference_decode(m, codec.config, max_candidates=cap)  # noqa: E731
        ref_maps = maps_list[:1] if name == "noise" else maps_list
        wall, cpu, refs = _time(ref, ref_maps, args.ref_repeats)
        out["reference_ms"][name], out["reference_cpu_ms"][name] = round(wall, 1), round(cpu, 1)
        out["speedup"][name] = round(out["reference_ms"][name] / out["fast_ms"][name], 1)
        out["speedup_cpu"][name] = round(out["reference_cpu_ms"][name] / out["fast_cpu_ms"][name], 1)
        same, diff, persons = True, 0.0, []
        for f, (kp, _) in zip(fast, refs):
            persons.append(len(f))
            if len(f) != len(kp) or not np.array_equal(f.keypoints[..., 2] > 0, kp[..., 2] > 0):
                same = False
            else:
                diff = max(diff, float(np.abs(f.keypoints - kp).max(initial=0.0)))
        out["parity"][name] = {"same_persons": same, "max_abs_diff_px": diff, "persons_found": persons,
                               "persons_reference": [len(kp) for kp, _ in refs]}
    out["authors_python_grouping_ms"] = round(1e3 / AUTHORS_IMG_PER_S, 1)
    out["speedup_vs_authors_5.2_img_per_s"] = {
        k: round(out["authors_python_grouping_ms"] / v, 1) for k, v in out["fast_ms"].items()}
    out["load_average_end"] = os.getloadavg()[0]
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
