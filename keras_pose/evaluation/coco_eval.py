"""COCO keypoint evaluation through pycocotools' COCOeval (OKS-based AP/AR).

There is deliberately no home-made OKS here: numbers must be comparable with
published COCO results, so everything goes through ``pycocotools.cocoeval``.

Results are COCO results-format dicts, one per detected person:
``{"image_id", "category_id": 1, "keypoints": [x1, y1, v1, ... xK, yK, vK],
"score"}`` (K keypoints; ``Poses.to_coco`` writes them). Imports without
TensorFlow.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import pathlib
import sys
from typing import Iterable, Mapping

import numpy as np

from keras_pose.io import atomic_write_json

__all__ = [
    "STAT_NAMES", "evaluate_keypoints", "format_stats", "print_stats",
    "write_results", "load_results", "load_coco_gt", "results_from_poses",
]

# The order of COCOeval.stats for iouType="keypoints" (summarize()).
STAT_NAMES = ("AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl")
_STAT_LABELS = (
    "Average Precision  (AP) @[ OKS=0.50:0.95 | area=   all ]",
    "Average Precision  (AP) @[ OKS=0.50      | area=   all ]",
    "Average Precision  (AP) @[ OKS=0.75      | area=   all ]",
    "Average Precision  (AP) @[ OKS=0.50:0.95 | area=medium ]",
    "Average Precision  (AP) @[ OKS=0.50:0.95 | area= large ]",
    "Average Recall     (AR) @[ OKS=0.50:0.95 | area=   all ]",
    "Average Recall     (AR) @[ OKS=0.50      | area=   all ]",
    "Average Recall     (AR) @[ OKS=0.75      | area=   all ]",
    "Average Recall     (AR) @[ OKS=0.50:0.95 | area=medium ]",
    "Average Recall     (AR) @[ OKS=0.50:0.95 | area= large ]",
)


@contextlib.contextmanager
def _maybe_quiet(quiet: bool):
    """pycocotools prints progress with print(); swallow it when asked."""
    if not quiet:
        yield
        return
    with contextlib.redirect_stdout(io.StringIO()):
        yield


def load_coco_gt(coco_gt_or_annotation_path, quiet: bool = True):
    """A ``pycocotools.coco.COCO`` from a COCO object, a dataset dict or a JSON path."""
    from pycocotools.coco import COCO

    src = coco_gt_or_annotation_path
    if isinstance(src, COCO):
        return src
    if isinstance(src, Mapping):
        gt = COCO()
        gt.dataset = dict(src)
        with _maybe_quiet(quiet):
            gt.createIndex()
        return gt
    if isinstance(src, (str, os.PathLike)):
        path = pathlib.Path(src)
        if not path.is_file():
            raise FileNotFoundError(f"COCO annotation file not found: {path}")
        try:
            with _maybe_quiet(quiet):
                return COCO(str(path))
        except (ValueError, json.JSONDecodeError) as e:
            raise ValueError(f"cannot read COCO annotations from {path}: {e}") from None
    raise TypeError("coco_gt_or_annotation_path must be a pycocotools COCO, a dict or a path, "
                    f"got {type(src).__name__}")


def results_from_poses(poses_by_image: Mapping, category_id: int = 1) -> list:
    """{image_id: Poses} -> a flat list of COCO results dicts."""
    out = []
    for image_id, poses in poses_by_image.items():
        out.extend(poses.to_coco(image_id, category_id=category_id))
    return out


def load_results(path) -> list:
    """Read a COCO results JSON file (a list of dicts)."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"results file not found: {path}")
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    if not isinstance(data, list):
        raise ValueError(f"{path}: a COCO results file must hold a JSON list, got {type(data).__name__}")
    return data


def _json_default(v):
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    raise TypeError(f"cannot write {type(v).__name__} to a COCO results file")


def write_results(results: Iterable[dict], path) -> pathlib.Path:
    """Write COCO results dicts (NumPy values allowed) as a JSON list; returns the path."""
    path = pathlib.Path(path)
    # atomically: evaluate.py --boxes and other tools read this file back
    atomic_write_json(path, list(results), default=_json_default, indent=None)
    return path


def _check_results(results: list, gt, num_keypoints: int) -> list:
    """Validate entries and fill ``category_id``; one clear error per problem."""
    clean = []
    for i, r in enumerate(results):
        if not isinstance(r, Mapping) or "image_id" not in r or "keypoints" not in r:
            raise ValueError(f"result {i} must be a dict with 'image_id', 'keypoints' and 'score'")
        kp = np.asarray(r["keypoints"], np.float64).reshape(-1)
        if kp.size != 3 * num_keypoints:
            raise ValueError(f"result {i} (image {r['image_id']}) has {kp.size} keypoint values, "
                             f"expected 3 * {num_keypoints}")
        if not np.all(np.isfinite(kp)):
            raise ValueError(f"result {i} (image {r['image_id']}) has non-finite keypoints")
        clean.append({"image_id": int(r["image_id"]), "category_id": int(r.get("category_id", 1)),
                      "keypoints": kp.tolist(), "score": float(r.get("score", 1.0))})
    known = set(gt.getImgIds())
    unknown = sorted({r["image_id"] for r in clean} - known)
    if unknown:
        shown = ", ".join(map(str, unknown[:5])) + (" ..." if len(unknown) > 5 else "")
        raise ValueError(f"{len(unknown)} result image id(s) are not in the ground truth: {shown}")
    return clean


def _num_keypoints(gt, sigmas) -> int:
    """K from the sigmas, else from the GT categories; COCOeval's default is 17."""
    cats = gt.loadCats(gt.getCatIds())
    k_gt = len(cats[0]["keypoints"]) if cats and "keypoints" in cats[0] else None
    if sigmas is not None:
        if k_gt is not None and len(sigmas) != k_gt:
            raise ValueError(f"{len(sigmas)} OKS sigmas for {k_gt} ground-truth keypoints")
        return len(sigmas)
    if k_gt not in (None, 17):
        raise ValueError(f"the ground truth has {k_gt} keypoints: pass their OKS sigmas")
    return 17


def _pooled(gt, results, quiet):
    """One category for all: several keypoint categories of one layout (AP-10K's
    species) are scored class-agnostic, since our results carry no class
    (pycocotools' computeOks ignores ``useCats = 0``, so the labels are merged)."""
    cat = min(gt.getCatIds())
    pooled = dict(gt.dataset)
    pooled["annotations"] = [dict(a, category_id=cat) for a in gt.dataset["annotations"]]
    pooled["categories"] = [c for c in gt.dataset["categories"] if c["id"] == cat]
    return load_coco_gt(pooled, quiet), [dict(r, category_id=cat) for r in results]


def _empty_detections(gt):
    """A results COCO with no detections (pycocotools' loadRes fails on [])."""
    from pycocotools.coco import COCO

    dt = COCO()
    dt.dataset = {"images": list(gt.dataset.get("images", [])),
                  "categories": list(gt.dataset.get("categories", [])), "annotations": []}
    dt.createIndex()
    return dt


def evaluate_keypoints(results, coco_gt_or_annotation_path, image_ids=None,
                       quiet: bool = True, sigmas=None) -> dict:
    """COCO keypoint AP/AR of ``results`` against the ground truth.

    Args:
        results: a list of COCO results dicts (see module docstring), or a path
            to a results JSON file. An empty list gives AP = AR = 0.
        coco_gt_or_annotation_path: a pycocotools COCO, a dataset dict or the
            path of a person_keypoints JSON.
        image_ids: evaluate only these images (default: every GT image). Pass
            the ids you ran the model on when evaluating a subset.
        quiet: silence pycocotools' own prints.
        sigmas: (K,) OKS sigmas for a non-COCO KeypointSpec (default COCO's).

    Returns:
        {"AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl"}
        as floats; -1 where COCOeval has no ground truth for that entry.
    """
    from pycocotools.cocoeval import COCOeval

    gt = load_coco_gt(coco_gt_or_annotation_path, quiet=quiet)
    if isinstance(results, (str, os.PathLike)):
        results = load_results(results)
    results = list(results)
    k = _num_keypoints(gt, sigmas)
    results = _check_results(results, gt, k)
    if image_ids is not None:
        image_ids = sorted({int(i) for i in image_ids})
        missing = sorted(set(image_ids) - set(gt.getImgIds()))
        if missing:
            raise ValueError(f"image_ids not in the ground truth: {missing[:5]}")
    if len(gt.getCatIds()) > 1:
        gt, results = _pooled(gt, results, quiet)
    with _maybe_quiet(quiet):
        dt = gt.loadRes(results) if results else _empty_detections(gt)
        ev = COCOeval(gt, dt, iouType="keypoints")
        if sigmas is not None:
            ev.params.kpt_oks_sigmas = np.asarray(sigmas, np.float64)
        if image_ids is not None:
            ev.params.imgIds = image_ids
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return {name: float(v) for name, v in zip(STAT_NAMES, ev.stats)}


def format_stats(stats: Mapping) -> str:
    """The AP/AR table as COCOeval prints it, one line per stat."""
    return "\n".join(f" {label} = {float(stats[name]):.3f}"
                     for name, label in zip(STAT_NAMES, _STAT_LABELS))


def print_stats(stats: Mapping, file=None) -> None:
    """Print the AP/AR table (``format_stats``) to ``file`` (default stdout)."""
    print(format_stats(stats), file=file or sys.stdout)
