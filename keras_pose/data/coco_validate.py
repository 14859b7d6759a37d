"""Validation of a COCO person-keypoints file at load time, once, before any training step.

Every image entry and annotation is checked against what the readers later rely on:

* image entries: a dict with an integer ``id`` (unique), a non-empty ``file_name``
  and positive ``height`` / ``width``;
* annotations: an ``id``, an ``image_id`` naming a valid image entry, a
  ``category_id`` among the file's categories (when it lists any), a ``bbox`` of 4
  finite numbers with positive width and height (the training crop's scale is the
  box height, ``docs/bad_input.md``), ``keypoints`` of exactly 3 x K finite numbers
  for the ``KeypointSpec``'s K with visibilities in {0, 1, 2}, a finite ``area``.

``mode="skip"`` (the default) drops each bad entry (an image entry takes its
annotations with it) and logs one summary line counting and naming them;
``mode="strict"`` raises ``ValueError`` with one line naming the file, the first
bad entry and the total. Pure Python + NumPy; imports without TensorFlow.
"""
from __future__ import annotations

import collections
import logging
import math
import numbers

log = logging.getLogger("keras_pose.data.coco")

MODES = ("skip", "strict")
_SHOW = 5  # ids named per reason in the summary line


def _finite_numbers(values) -> bool:
    return all(isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)
               for v in values)


def _image_problem(img) -> str | None:
    if not isinstance(img, dict):
        return "not a JSON object"
    if not isinstance(img.get("id"), numbers.Integral) or isinstance(img.get("id"), bool):
        return "no integer 'id'"
    name = img.get("file_name")
    if not isinstance(name, str) or not name.strip():
        return "missing 'file_name'"
    for key in ("height", "width"):
        v = img.get(key)
        if not _finite_numbers([v]) or v <= 0:
            return f"'{key}' is {v!r}, not a positive number"
    return None


def _annotation_problem(a, image_ids, category_ids, num_keypoints) -> str | None:
    if not isinstance(a, dict):
        return "not a JSON object"
    if "id" not in a:
        return "no 'id'"
    if a.get("image_id") not in image_ids:
        return f"image_id {a.get('image_id')!r} names no valid image entry"
    if category_ids and a.get("category_id", 1) not in category_ids:
        return f"category_id {a.get('category_id')!r} is not in 'categories'"
    box = a.get("bbox")
    if not isinstance(box, (list, tuple)) or len(box) != 4 or not _finite_numbers(box):
        return f"bbox {box!r} is not 4 finite numbers"
    if box[2] <= 0 or box[3] <= 0:
        return f"bbox {list(box)} has zero or negative size"
    kp = a.get("keypoints")
    if kp is not None:
        if not isinstance(kp, (list, tuple)) or len(kp) != 3 * num_keypoints:
            n = len(kp) if isinstance(kp, (list, tuple)) else type(kp).__name__
            return f"keypoints has {n} values, expected {3 * num_keypoints} ({num_keypoints} x 3)"
        if not _finite_numbers(kp):
            return "keypoints hold NaN, inf or non-numbers"
        if any(v not in (0, 1, 2) for v in kp[2::3]):
            return "keypoint visibility not in {0, 1, 2}"
    if "area" in a and not _finite_numbers([a["area"]]):
        return f"area {a['area']!r} is not a finite number"
    return None


def _summary(path, bad, totals) -> str:
    parts = []
    for (kind, reason), ids in bad.items():
        shown = ", ".join(str(i) for i in ids[:_SHOW]) + (", ..." if len(ids) > _SHOW else "")
        parts.append(f"{len(ids)} {kind}(s) {reason} (id {shown})")
    counts = ", ".join(f"{sum(len(v) for (k, _), v in bad.items() if k == kind)} of "
                       f"{totals[kind]} {kind}s" for kind in ("image", "annotation"))
    return f"{path}: skipped {counts}: " + "; ".join(parts)


def validate_coco(data: dict, path: str, spec=None, mode: str = "skip") -> tuple:
    """Check every image entry and annotation of a loaded COCO dict.

    Args:
        data: the parsed JSON (with ``images`` and ``annotations`` lists).
        path: the file name, for messages.
        spec: the ``KeypointSpec`` annotations must match (default COCO, K = 17).
        mode: "skip" (drop bad entries, log one summary line) or "strict" (raise).
    Returns:
        (clean data dict - a shallow copy, ``data`` is not modified; the skipped
        entries as {(kind, reason): [ids]}).
    Raises:
        ValueError: ``mode`` unknown, or in strict mode the first problem, one line.
    """
    if mode not in MODES:
        raise ValueError(f"bad_annotations must be one of {', '.join(MODES)}, got {mode!r}")
    if spec is None:
        from keras_pose.skeleton import COCO as spec
    k = spec.num_keypoints
    bad: dict = collections.defaultdict(list)
    first = []

    def drop(kind, entry, reason):
        ident = entry.get("id", "?") if isinstance(entry, dict) else "?"
        bad[(kind, reason)].append(ident)
        if not first:
            first.append(f"{kind} id {ident}: {reason}")

    images, seen = [], set()
    for img in data["images"]:
        problem = _image_problem(img)
        if problem is None and img["id"] in seen:
            problem = "duplicate id"
        if problem:
            drop("image", img, problem)
            continue
        seen.add(img["id"])
        images.append(img)
    cats = {c.get("id") for c in data.get("categories") or [] if isinstance(c, dict)}
    dropped_images = {img.get("id") for img in data["images"] if isinstance(img, dict)} - seen
    anns = []
    for a in data["annotations"]:
        if isinstance(a, dict) and a.get("image_id") in dropped_images:
            drop("annotation", a, "is on a skipped image entry")
            continue
        problem = _annotation_problem(a, seen, cats, k)
        if problem:
            drop("annotation", a, problem)
        else:
            anns.append(a)
    if not bad:
        return data, {}
    totals = {"image": len(data["images"]), "annotation": len(data["annotations"])}
    if mode == "strict":
        n = sum(len(v) for v in bad.values())
        more = f" (and {n - 1} more)" if n > 1 else ""
        raise ValueError(f"{path}: {first[0]}{more}; fix the file, or pass "
                         "--bad_annotations skip to leave bad entries out")
    log.warning("%s", _summary(path, bad, totals))
    return {**data, "images": images, "annotations": anns}, dict(bad)
