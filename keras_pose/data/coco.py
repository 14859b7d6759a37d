"""COCO person-keypoint reader: per-image records, masks and main-person samples.

Shapes: N persons in an image, K keypoints (the KeypointSpec's: 17 for COCO),
H x W image pixels.

Follows ``docs/method_bottom_up.md`` §2.1 (the authors' ``data/coco_masks_hdf5.py``):

* ``person_mask``: union of every person segmentation, crowd regions included;
* ``ignore_mask``: non-crowd persons with ``num_keypoints == 0`` plus the crowd
  region minus the non-crowd masks that precede it in annotation order;
* training samples: one per *main person* (``num_keypoints >= 5``, segmentation
  area >= 32*32, centre not too close to an already chosen main person), with
  every other annotated person of the image as extra ground truth.

Two deliberate departures from the original script, both documented where they
happen: several crowd annotations in one image are united instead of raising,
and the main-person distance test uses each chosen person's own box size.

Every image entry and annotation is validated once, at load time
(``coco_validate``): bad ones are skipped with one summary line, or, with
``bad_annotations="strict"``, the file is refused in one line.

Pure NumPy + pycocotools; imports without TensorFlow.
"""
from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import logging
import os
import pathlib

import numpy as np

from keras_pose.data.coco_validate import validate_coco

log = logging.getLogger(__name__)

MIN_MAIN_KEYPOINTS = 5          # §2.1: a main person has >= 5 labelled keypoints
MIN_MAIN_AREA = 32 * 32         # §2.1: segmentation area threshold (pixels)
MAIN_CENTRE_RATIO = 0.3         # §2.1: min centre distance, fraction of max(w, h)


@dataclasses.dataclass
class Persons:
    """All person annotations of one image, in annotation order.

    boxes: (N, 4) float32 [x, y, w, h]; keypoints: (N, K, 3) float32 [x, y, v]
    with COCO v in {0, 1, 2}; num_keypoints, iscrowd: (N,) int32; areas: (N,)
    float32 segmentation areas; ann_ids: (N,) int64.
    """

    boxes: np.ndarray
    keypoints: np.ndarray
    num_keypoints: np.ndarray
    areas: np.ndarray
    iscrowd: np.ndarray
    ann_ids: np.ndarray

    def __len__(self) -> int:
        return int(self.boxes.shape[0])

    @property
    def centres(self) -> np.ndarray:
        """(N, 2) box centres."""
        return self.boxes[:, :2] + self.boxes[:, 2:] / 2


@dataclasses.dataclass
class ImageRecord:
    """One image: id, file, size and its persons."""

    image_id: int
    path: str
    height: int
    width: int
    persons: Persons


@dataclasses.dataclass
class TrainingSample:
    """One training sample centred on a main person (§2.1).

    keypoints: (N, K, 3) COCO-order [x, y, v] in original image pixels; row 0 is
    the main person, the others are the image's remaining persons with
    ``num_keypoints > 0``. objpos: (2,) main-person box centre. scale_provided:
    main-person box height / training input height.
    """

    image_id: int
    path: str
    height: int
    width: int
    objpos: np.ndarray
    scale_provided: float
    keypoints: np.ndarray
    main_index: int  # index of the main person in the image's Persons


class CocoKeypoints:
    """Reader for a COCO person-keypoints annotation file and its images.

    Args:
        annotations: path to a ``person_keypoints_*.json`` file.
        images_dir: folder holding the images named by ``file_name``.
        main_min_area: segmentation area a main person needs (§2.1: 32 * 32 at
            COCO's ~640 px; smaller images, e.g. the synthetic set, scale it down).
        main_min_keypoints: labelled keypoints a main person needs (5).
        bad_annotations: "skip" (default: bad image entries and annotations are
            left out, counted and named in one logged line; ``skipped`` holds them)
            or "strict" (refuse the file). Checked once, here (``coco_validate``).
        spec: the ``KeypointSpec`` the keypoints must match (default COCO).

    Raises:
        ValueError: the file is missing, not valid JSON, or has no person
            keypoint annotations, or the images folder does not exist, or (strict)
            an entry is bad (the message names the file and the entry). Individual
            missing images are only counted (``missing_images``) and logged, and left out.
    """

    def __init__(self, annotations, images_dir, main_min_area: float = MIN_MAIN_AREA,
                 main_min_keypoints: int = MIN_MAIN_KEYPOINTS, bad_annotations: str = "skip",
                 spec=None):
        if main_min_area < 0 or main_min_keypoints < 1:
            raise ValueError(f"main_min_area must be >= 0 and main_min_keypoints >= 1, got "
                             f"{main_min_area}, {main_min_keypoints}")
        self.main_min_area, self.main_min_keypoints = float(main_min_area), int(main_min_keypoints)
        self.annotations_path = str(annotations)
        self.images_dir = str(images_dir)
        if spec is None:
            from keras_pose.skeleton import COCO as spec
        self.num_keypoints = spec.num_keypoints
        data, self.skipped = load_annotations(self.annotations_path, bad_annotations, spec,
                                              with_skipped=True)
        for c in data.get("categories") or []:
            # a whole file of another layout: say so, rather than skip every person
            n = len(c.get("keypoints") or []) if isinstance(c, dict) else 0
            if n and n != spec.num_keypoints:
                raise ValueError(f"{self.annotations_path}: category {c.get('name', c.get('id'))!r} "
                                 f"has {n} keypoints but the keypoint spec {spec.name!r} has "
                                 f"{spec.num_keypoints} (--keypoints)")
        if not os.path.isdir(self.images_dir):
            raise ValueError(f"images folder not found: {self.images_dir} "
                             f"(for {self.annotations_path})")
        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
            from pycocotools.coco import COCO
            self.coco = COCO()
            self.coco.dataset = data
            self.coco.createIndex()
        cats = data.get("categories") or []
        # person-like categories: those with a keypoint list (or named person)
        self._person_cats = {c["id"] for c in cats if "keypoints" in c or c.get("name") == "person"} or {1}
        self._records: dict[int, ImageRecord] = {}
        self.missing_images: list[str] = []
        for img in data["images"]:
            path = os.path.join(self.images_dir, img["file_name"])
            if not os.path.isfile(path):
                self.missing_images.append(path)
                continue
            anns = [a for a in self.coco.imgToAnns.get(img["id"], [])
                    if a.get("category_id", 1) in self._person_cats]
            self._records[img["id"]] = ImageRecord(
                int(img["id"]), path, int(img["height"]), int(img["width"]),
                _persons(anns, self.num_keypoints))
        if self.missing_images:
            log.warning("%s: %d of %d image files missing under %s (skipped), e.g. %s",
                        self.annotations_path, len(self.missing_images), len(data["images"]),
                        self.images_dir, self.missing_images[0])
        self.image_ids = list(self._records)
        self._mask_cache: dict[int, tuple] = {}

    @classmethod
    def from_dir(cls, coco_dir, split: str = "train2017", **kwargs) -> "CocoKeypoints":
        """Standard layout: ``annotations/person_keypoints_{split}.json`` + ``{split}/``."""
        root = pathlib.Path(coco_dir)
        return cls(root / "annotations" / f"person_keypoints_{split}.json", root / split, **kwargs)

    # ----------------------------------------------------------------- records
    def __len__(self) -> int:
        return len(self._records)

    @property
    def records(self) -> list:
        return list(self._records.values())

    def record(self, image_id: int) -> ImageRecord:
        try:
            return self._records[image_id]
        except KeyError:
            raise KeyError(f"image_id {image_id} is not in {self.annotations_path} "
                           "(or its image file is missing)") from None

    @property
    def num_annotations(self) -> int:
        return sum(len(r.persons) for r in self._records.values())

    # ------------------------------------------------------------------- masks
    def _masks(self, image_id: int) -> tuple:
        """(person, ignore) masks as RLEs, computed once per image.

        Compressed RLEs are small (~1 KB per mask for COCO), so caching every
        image costs little memory and saves re-rasterising polygons each epoch.
        """
        if image_id not in self._mask_cache:
            from pycocotools import mask as mask_utils
            person, ignore = _build_masks(self.coco, self.record(image_id), self._person_cats)
            self._mask_cache[image_id] = (mask_utils.encode(np.asfortranarray(person)),
                                          mask_utils.encode(np.asfortranarray(ignore)))
        return self._mask_cache[image_id]

    def person_mask(self, image_id: int) -> np.ndarray:
        """(H, W) uint8, 1 on any person segmentation (crowd included) (§2.1 mask_all)."""
        from pycocotools import mask as mask_utils
        return mask_utils.decode(self._masks(image_id)[0])

    def ignore_mask(self, image_id: int) -> np.ndarray:
        """(H, W) uint8, 1 where the loss must ignore (§2.1 mask_miss inverted).

        The ignored region is the union of non-crowd persons without keypoints
        and every crowd region minus the non-crowd persons annotated before it.
        The original script raises on more than one crowd annotation; we unite
        them, since several crowd regions are valid COCO.
        """
        from pycocotools import mask as mask_utils
        return mask_utils.decode(self._masks(image_id)[1])

    # ------------------------------------------------------------ main persons
    def main_persons(self, image_id: int) -> list:
        """Indices into the image's Persons that each start a training sample (§2.1).

        Fix of a quirk: the original compares a candidate's centre with each
        chosen centre using 0.3 * max(w, h) of whichever annotation came last in
        its loop; here every chosen person keeps its own box size.
        """
        p = self.record(image_id).persons
        chosen: list = []
        centres = p.centres
        for i in range(len(p)):
            if (p.iscrowd[i] or p.num_keypoints[i] < self.main_min_keypoints
                    or p.areas[i] < self.main_min_area):
                continue
            close = any(np.hypot(*(centres[i] - centres[j]))
                        < MAIN_CENTRE_RATIO * max(p.boxes[j, 2], p.boxes[j, 3]) for j in chosen)
            if not close:
                chosen.append(i)
        return chosen

    def samples(self, input_height: int = 512) -> list:
        """Training samples, one per main person, for training height ``input_height``.

        ``scale_provided`` = box height / ``input_height`` (§2.1; the original h5
        file fixes this to the build-time size, which is quirk §9.12).
        """
        out = []
        for rec in self._records.values():
            p = rec.persons
            others = [i for i in range(len(p)) if not p.iscrowd[i] and p.num_keypoints[i] > 0]
            for m in self.main_persons(rec.image_id):
                order = [m] + [i for i in others if i != m]
                out.append(TrainingSample(
                    image_id=rec.image_id, path=rec.path, height=rec.height, width=rec.width,
                    objpos=p.centres[m].astype(np.float32),
                    scale_provided=float(p.boxes[m, 3] / input_height),
                    keypoints=p.keypoints[order].copy(), main_index=m))
        return out

    def __repr__(self) -> str:
        return (f"CocoKeypoints({self.annotations_path!r}, {len(self)} images, "
                f"{self.num_annotations} persons)")


# --------------------------------------------------------------------- helpers
def load_annotations(path, bad_annotations: str = "skip", spec=None, with_skipped=False):
    """A person-keypoints JSON, parsed and validated once (``coco_validate``).

    Returns the clean dataset dict (what evaluation hands to pycocotools), or
    (dict, skipped) with ``with_skipped``. Raises ValueError naming the file.
    """
    path = str(path)
    data, skipped = validate_coco(_load_json(path), path, spec, bad_annotations)
    return (data, skipped) if with_skipped else data


def _load_json(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        raise ValueError(f"{path}: annotation file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(data, dict) or not isinstance(data.get("images"), list) \
            or not isinstance(data.get("annotations"), list):
        raise ValueError(f"{path}: not a COCO annotation file (needs 'images' and 'annotations' lists)")
    if not any("keypoints" in a for a in data["annotations"]):
        raise ValueError(f"{path}: has no person keypoint annotations "
                         "(expected a COCO person_keypoints_*.json)")
    return data


def _persons(anns: list, k: int) -> Persons:
    """(validated) annotations of one image -> Persons with K = k keypoints."""
    n = len(anns)
    kp = np.zeros((n, k, 3), np.float32)
    for i, a in enumerate(anns):
        if a.get("keypoints"):
            kp[i] = np.asarray(a["keypoints"], np.float32).reshape(k, 3)
    labelled = (kp[..., 2] > 0).sum(axis=1)
    return Persons(
        boxes=np.asarray([a.get("bbox", [0, 0, 0, 0]) for a in anns], np.float32).reshape(n, 4),
        keypoints=kp,
        num_keypoints=np.asarray([a.get("num_keypoints", labelled[i]) for i, a in enumerate(anns)],
                                 np.int32).reshape(n),
        areas=np.asarray([a.get("area", 0.0) for a in anns], np.float32).reshape(n),
        iscrowd=np.asarray([a.get("iscrowd", 0) for a in anns], np.int32).reshape(n),
        ann_ids=np.asarray([a.get("id", -1) for a in anns], np.int64).reshape(n))


def _build_masks(coco, rec: ImageRecord, person_cats: set) -> tuple:
    """Full-resolution (person, ignore) uint8 masks for one image (§2.1)."""
    h, w = rec.height, rec.width
    person = np.zeros((h, w), np.uint8)
    ignore = np.zeros((h, w), np.uint8)
    noncrowd = np.zeros((h, w), np.uint8)
    for a in coco.imgToAnns.get(rec.image_id, []):
        if a.get("category_id", 1) not in person_cats or not a.get("segmentation"):
            continue
        m = coco.annToMask(a)
        if m.shape != (h, w):  # annToMask uses the JSON size; guard odd files
            continue
        person |= m
        if a.get("iscrowd", 0):
            # Crowd minus the non-crowd persons seen so far (the original's order).
            ignore |= m & (1 - noncrowd)
        else:
            noncrowd |= m
            if a.get("num_keypoints", 0) <= 0:
                ignore |= m
    return person, ignore
