"""Procedural multi-person pose dataset in COCO person-keypoints format (no downloads).

Each scene holds 1-8 articulated figures (``_figure``: a 3-D kinematic tree over
the 17 COCO keypoints with human proportions and joint limits, turned, rolled and
projected) drawn far to near over a cluttered background (``_render``), with
figures overlapping, occluding each other and cut by the image border, the odd
keypoint-less figure and the odd crowd region. Annotations follow COCO:

* keypoints [x, y, v] * 17: (x, y) is the joint centre in pixels, with OpenCV's
  convention that pixel (col i, row j) is centred at (i, j); each joint is drawn
  at exactly those coordinates, so the pixel under a keypoint is
  (floor(x + 0.5), floor(y + 0.5)). v = 2 when that pixel shows the joint
  itself, v = 1 when a nearer part (of another figure or of the same body)
  covers it, v = 0 with (0, 0) when it falls outside the image or is a face
  point turned away from the camera (far ear/eye in profile, nose in a back view);
* segmentation: polygons of the figure's *visible* pixels; area: their count;
  bbox: their pixel box [x, y, w, h];
* num_keypoints 0 for figures left unannotated (as COCO's small people) and for
  the crowd region (iscrowd 1, uncompressed RLE over a cluster of small figures);
  both exist so that training masks get exercised. A figure with a visible joint
  is always annotated; one hidden almost entirely (< ``min_area`` pixels, no
  visible joint) gets no annotation.

Sizes: ``image_size`` is (H, W). A figure's *standing* height is log-uniform in
[min_height, max_height] x H, so sitting, bending or lying figures have smaller
boxes than that. Images are JPEG (quality 90, 4:4:4 chroma).

The same seed gives byte-identical JSON and JPEG files: image i of a split
draws from its own ``SeedSequence([seed, split, i])``, so it does not depend on
the number of workers or images. ``SyntheticConfig`` holds the difficulty knobs;
``PRESETS["quickstart"]`` is the README quickstart's setting.

CLI::

    python -m keras_pose.data.synthetic --out DIR --num_images N --seed S \
        [--val_images M] [--image_size 256 | HxW] [--preset easy] [--workers 2]
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing
import os
import sys
import time

import cv2
import numpy as np

from keras_pose.config import Config
from keras_pose.data import _figure as fig_mod
from keras_pose.data import _render as rnd
from keras_pose.data import _scene
from keras_pose.data import _spec_map
from keras_pose.data._spec_map import check_spec  # noqa: F401 (public: which specs map)
from keras_pose.skeleton import COCO

_SPLITS = {"train": 0, "val": 1}


@dataclasses.dataclass
class SyntheticConfig(Config):
    """Difficulty knobs of the synthetic scenes (fractions are of the image height)."""

    min_figures: int = 1
    max_figures: int = 8
    min_height: float = 0.1          # standing height of a figure, fraction of the image height
    max_height: float = 0.9
    overlap: float = 0.5             # probability that a figure is placed against an earlier one
    truncation: float = 0.2          # probability that a figure may cross the image border
    unannotated_prob: float = 0.06   # figures drawn but given num_keypoints 0 (x2 when small)
    crowd_prob: float = 0.12         # images with an iscrowd region
    crowd_size: tuple[int, int] = (4, 10)    # figures in a crowd region
    back_view_prob: float = 0.1
    profile_prob: float = 0.3        # side views (the far limbs hide behind the body)
    posture_weights: tuple[float, ...] = (0.2, 0.12, 0.05, 0.1, 0.07, 0.07, 0.08, 0.07, 0.08,
                                          0.05, 0.04, 0.07)   # in _figure.POSTURES order
    clutter: int = 10                # at most this many background shapes
    background_noise: float = 25.0   # amplitude of low-frequency background blotches
    texture_prob: float = 0.5        # figures with striped / checked / mottled clothes
    brightness: float = 0.25         # contrast and brightness jitter
    blur_prob: float = 0.3
    noise_std: float = 8.0           # max sensor-noise std (applied to half of the images)
    min_area: int = 4                # figures with fewer visible pixels are not annotated
    jpeg_quality: int = 90

    def validate(self) -> None:
        def bad(field, why):
            raise ValueError(f"SyntheticConfig.{field}: {why} (got {getattr(self, field)!r})")
        if not 1 <= self.min_figures <= self.max_figures:
            bad("max_figures", "need 1 <= min_figures <= max_figures")
        if not 0 < self.min_height <= self.max_height <= 2:
            bad("max_height", "need 0 < min_height <= max_height <= 2")
        for f in ("overlap", "truncation", "unannotated_prob", "crowd_prob", "back_view_prob",
                  "profile_prob", "texture_prob", "blur_prob", "brightness"):
            if not 0 <= getattr(self, f) <= 1:
                bad(f, "must lie in [0, 1]")
        if self.back_view_prob + self.profile_prob > 1:
            bad("profile_prob", "back_view_prob + profile_prob must not exceed 1")
        if len(self.crowd_size) != 2 or not 1 <= self.crowd_size[0] <= self.crowd_size[1]:
            bad("crowd_size", "must be (lo, hi) with 1 <= lo <= hi")
        w = np.asarray(self.posture_weights, float)
        if w.shape != (len(fig_mod.POSTURES),) or (w < 0).any() or w.sum() <= 0:
            bad("posture_weights", f"need {len(fig_mod.POSTURES)} non-negative weights for "
                f"{fig_mod.POSTURES}")
        if self.clutter < 0 or self.noise_std < 0 or self.background_noise < 0 or self.min_area < 1:
            bad("clutter", "clutter, noise_std, background_noise must be >= 0 and min_area >= 1")
        if not 1 <= self.jpeg_quality <= 100:
            bad("jpeg_quality", "must lie in [1, 100]")


PRESETS = {
    "default": SyntheticConfig(),
    # The quickstart: fewer, larger, cleaner figures (a tiny CPU model learns it in minutes).
    # Still 1-4 overlapping figures (grouping is the point), but upright postures
    # dominate and side/back views, clutter and camera effects are rarer.
    "easy": SyntheticConfig(max_figures=4, min_height=0.3, max_height=0.85, overlap=0.35,
                            truncation=0.1, unannotated_prob=0.03, crowd_prob=0.05,
                            back_view_prob=0.05, profile_prob=0.15,
                            posture_weights=(0.25, 0.15, 0.04, 0.12, 0.1, 0.08, 0.08, 0.04,
                                             0.06, 0.03, 0.02, 0.03),
                            clutter=4, background_noise=15.0, texture_prob=0.3,
                            brightness=0.15, blur_prob=0.15, noise_std=4.0),
    # The README quickstart (a 0.5 M-param model, ~9 CPU minutes): the scenes of
    # "easy" with at most 3 figures of 40-90% of the image height (still
    # overlapping and truncated, so grouping matters), rendered with milder
    # nuisance (little clutter, few textured clothes, rare blur and noise), and
    # mostly upright, camera-facing figures: every posture still occurs, but
    # bending, sitting, squatting, kneeling and lying make 8% of figures (not
    # 18%) and side / back views 7% (not 20%). Those two knobs cost the tiny
    # model most (README: a model trained on the earlier mix scored 0.37 on it
    # and 0.46 with upright postures only, 0.42 with front views only).
    "quickstart": SyntheticConfig(max_figures=3, min_height=0.4, max_height=0.9, overlap=0.35,
                                  truncation=0.1, unannotated_prob=0.03, crowd_prob=0.05,
                                  back_view_prob=0.02, profile_prob=0.05,
                                  posture_weights=(0.3, 0.2, 0.04, 0.12, 0.12, 0.1, 0.04,
                                                   0.02, 0.03, 0.01, 0.01, 0.01),
                                  clutter=2, background_noise=10.0, texture_prob=0.15,
                                  brightness=0.1, blur_prob=0.05, noise_std=2.0),
    "hard": SyntheticConfig(max_figures=10, min_height=0.08, overlap=0.7, truncation=0.35,
                            crowd_prob=0.2, back_view_prob=0.15, clutter=20,
                            background_noise=40.0, texture_prob=0.8, brightness=0.35,
                            blur_prob=0.5, noise_std=14.0),
    # Flat colours and no camera effects: the label map and the pixels agree exactly.
    "clean": SyntheticConfig(clutter=0, background_noise=0.0, texture_prob=0.0,
                             brightness=0.0, blur_prob=0.0, noise_std=0.0),
}


def get_preset(name: str) -> SyntheticConfig:
    if name not in PRESETS:
        raise ValueError(f"unknown synthetic preset {name!r}; choose from {sorted(PRESETS)}")
    return PRESETS[name]


def _as_size(image_size):
    if isinstance(image_size, (int, np.integer)):
        image_size = (image_size, image_size)
    try:
        h, w = (int(v) for v in image_size)
    except (TypeError, ValueError):
        raise ValueError(f"image_size must be an int or (height, width), "
                         f"got {image_size!r}") from None
    if h < 16 or w < 16:
        raise ValueError(f"image_size must be at least 16x16, got {(h, w)}")
    return h, w


def make_scene(rng, image_size=(256, 256), config: SyntheticConfig | None = None,
               return_info: bool = False):
    """One synthetic scene in memory.

    rng: a ``numpy.random.Generator``; image_size: int or (H, W).
    Returns (image (H, W, 3) uint8 RGB, annotations) -- COCO annotation dicts
    without ``id``/``image_id`` -- and, with ``return_info``, a third dict:
    ``labels`` (H, W) uint16 label map (0 = background), ``parts`` (N + 1, 2)
    int [figure index, part kind] per label, ``colours`` (N + 1, 3) uint8 flat
    colour per label (before texture and camera effects), and ``figures``, a list
    in drawing order (far to near) of dicts with ``xy`` (17, 2) projected
    keypoints, ``face_visible``, ``owners`` (labels that count as each keypoint),
    ``labels`` (start, end), ``crowd``, ``unannotated``, ``posture``, ``scale``
    and ``annotation`` (its index in the returned list or None).
    """
    cfg = config or PRESETS["default"]
    h, w = _as_size(image_size)
    return _scene.compose(rng, h, w, cfg, return_info)


def _scene_rng(seed: int, split: str, index: int):
    return np.random.default_rng(np.random.SeedSequence([int(seed), _SPLITS[split], int(index)]))


def _worker_init():
    cv2.setNumThreads(1)   # the pool is the parallelism


def _render_one(args):
    seed, split, index, size, cfg_dict, spec_dict = args
    cfg = SyntheticConfig.from_dict(cfg_dict)
    image, anns = make_scene(_scene_rng(seed, split, index), size, cfg)
    if spec_dict is not None:
        from keras_pose.skeleton import KeypointSpec
        anns = _spec_map.relabel_annotations(anns, KeypointSpec.from_dict(spec_dict))
    # 4:4:4 chroma: the default 4:2:0 halves colour resolution, which smears the
    # left/right colour coding of limbs only 2-3 pixels wide in small images.
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR),
                           [cv2.IMWRITE_JPEG_QUALITY, cfg.jpeg_quality,
                            cv2.IMWRITE_JPEG_SAMPLING_FACTOR, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444])
    if not ok:
        raise RuntimeError(f"JPEG encoding failed for {split} image {index}")
    return buf.tobytes(), anns


def categories(spec=COCO) -> list:
    """COCO ``categories`` entry for persons with ``spec``'s keypoints and 1-based skeleton."""
    return [{"supercategory": "person", "id": 1, "name": "person",
             "keypoints": list(spec.names),
             "skeleton": [[int(a) + 1, int(b) + 1] for a, b in spec.skeleton]}]


def _write_split(out_dir, split, n, seed, size, cfg, num_workers, progress, spec=COCO):
    img_dir = os.path.join(out_dir, split)
    os.makedirs(img_dir, exist_ok=True)
    spec_dict = None if spec == COCO else spec.to_dict()
    jobs = [(seed, split, i, size, cfg.to_dict(), spec_dict) for i in range(n)]
    images, annotations = [], []
    pool = None
    if num_workers > 0:
        # fork is cheap and works from any __main__ (stdin, notebooks); spawn is the
        # safe choice once TensorFlow's threads exist in this process.
        method = ("fork" if "fork" in multiprocessing.get_all_start_methods()
                  and "tensorflow" not in sys.modules else "spawn")
        pool = multiprocessing.get_context(method).Pool(num_workers, initializer=_worker_init)
    try:
        results = pool.imap(_render_one, jobs, chunksize=8) if pool else map(_render_one, jobs)
        if progress:
            from tqdm import tqdm
            results = tqdm(results, total=n, desc=f"synthetic {split}", unit="img",
                           mininterval=1.0)
        for i, (jpeg, anns) in enumerate(results):
            image_id = i + 1
            name = f"{image_id:012d}.jpg"
            with open(os.path.join(img_dir, name), "wb") as fh:
                fh.write(jpeg)
            images.append({"id": image_id, "file_name": name, "height": size[0], "width": size[1]})
            for a in anns:
                annotations.append({"id": len(annotations) + 1, "image_id": image_id, **a})
    finally:
        if pool:
            pool.close()
            pool.join()
    doc = {"info": {"description": "keras_pose synthetic multi-person keypoints",
                    "version": "1.0", "split": split, "seed": int(seed),
                    "config": cfg.to_dict()},
           "licenses": [], "images": images, "annotations": annotations,
           "categories": categories(spec)}
    ann_path = os.path.join(out_dir, "annotations", f"person_keypoints_{split}.json")
    os.makedirs(os.path.dirname(ann_path), exist_ok=True)
    with open(ann_path, "w", encoding="utf-8") as fh:
        json.dump(doc, fh, separators=(",", ":"))
    return img_dir, ann_path


def generate_dataset(out_dir, num_train: int, num_val: int, seed: int = 0,
                     image_size=(256, 256), config: SyntheticConfig | str | None = None,
                     num_workers: int = 0, progress: bool = True, spec=None) -> dict:
    """Write a synthetic COCO-format dataset and return its paths.

    ``spec``: a human KeypointSpec to label the figures with (default COCO; others
    map by name, ``check_spec``), e.g. CrowdPose or MPII.

    Layout: ``out_dir/{train,val}/<id:012d>.jpg`` and
    ``out_dir/annotations/person_keypoints_{train,val}.json``; image_size is (H, W)
    or an int; config a SyntheticConfig or a preset name. Train and val scenes come
    from disjoint seed streams. Returns a dict with ``root``, ``train_images``,
    ``train_annotations``, ``val_images``, ``val_annotations``.
    """
    cfg = get_preset(config) if isinstance(config, str) else (config or PRESETS["default"])
    cfg.validate()
    spec = spec or COCO
    check_spec(spec)
    size = _as_size(image_size)
    for name, v in (("num_train", num_train), ("num_val", num_val), ("num_workers", num_workers)):
        if int(v) < 0:
            raise ValueError(f"generate_dataset: {name} must be >= 0, got {v}")
    paths = {"root": str(out_dir)}
    for split, n in (("train", num_train), ("val", num_val)):
        paths[f"{split}_images"], paths[f"{split}_annotations"] = _write_split(
            str(out_dir), split, int(n), int(seed), size, cfg, int(num_workers), progress, spec)
    return paths


def sample_grid(seed: int = 0, image_size=(192, 192), config=None, rows: int = 2,
                cols: int = 3, gap: int = 4) -> np.ndarray:
    """(rows*H + gaps, cols*W + gaps, 3) uint8 RGB preview of scenes with annotations drawn."""
    h, w = _as_size(image_size)
    cfg = get_preset(config) if isinstance(config, str) else (config or PRESETS["default"])
    grid = np.full((rows * h + (rows - 1) * gap, cols * w + (cols - 1) * gap, 3), 255, np.uint8)
    for r in range(rows):
        for c in range(cols):
            image, anns = make_scene(_scene_rng(seed, "val", r * cols + c), (h, w), cfg)
            grid[r * (h + gap):r * (h + gap) + h, c * (w + gap):c * (w + gap) + w] = \
                rnd.draw_annotations(image, anns, COCO.skeleton)
    return grid


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m keras_pose.data.synthetic",
                                description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--num_images", type=int, required=True, help="training images")
    p.add_argument("--val_images", type=int, default=None,
                   help="validation images (default: num_images // 10, at least 1)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--image_size", default="256", help="N (square) or HxW, e.g. 256x192")
    p.add_argument("--preset", default="default", choices=sorted(PRESETS))
    p.add_argument("--workers", type=int, default=0, help="worker processes (0: in-process)")
    p.add_argument("--preview", default=None, help="also write a 2x3 annotated PNG grid here")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    try:
        size = tuple(int(v) for v in args.image_size.lower().split("x"))
        size = size * 2 if len(size) == 1 else size
        if len(size) != 2:
            raise ValueError
    except ValueError:
        p.error(f"--image_size: expected N or HxW, got {args.image_size!r}")
    n_val = max(1, args.num_images // 10) if args.val_images is None else args.val_images
    t0 = time.perf_counter()
    try:
        paths = generate_dataset(args.out, args.num_images, n_val, args.seed, size, args.preset,
                                 args.workers, progress=not args.quiet)
    except ValueError as e:   # bad sizes or counts: one line, not a traceback
        p.error(str(e))
    dt = time.perf_counter() - t0
    if args.preview:
        grid = sample_grid(args.seed, (min(size), min(size)), args.preset)
        cv2.imwrite(args.preview, cv2.cvtColor(grid, cv2.COLOR_RGB2BGR),
                    [cv2.IMWRITE_PNG_COMPRESSION, 9])
        paths["preview"] = args.preview
    total = args.num_images + n_val
    print(json.dumps({**paths, "images": total, "seconds": round(dt, 2),
                      "images_per_s": round(total / max(dt, 1e-9), 1)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
