"""The COCO reader validates every entry at load time: skip (named, counted) or strict (one line).

Issue cases 2-5: an image entry without ``file_name``, zero- and negative-size
boxes, 48 keypoint values; plus NaN/inf, ids pointing nowhere, bad visibilities.
"""
import copy
import json
import logging

import cv2
import numpy as np
import pytest

from keras_pose.data.coco import CocoKeypoints
from keras_pose.data.coco_validate import validate_coco
from keras_pose.skeleton import COCO


def _person(ann_id, image_id, box=(10, 10, 30, 40), k=17):
    kp = []
    for i in range(k):
        kp += [12.0 + i, 15.0 + i, 2]
    return {"id": ann_id, "image_id": image_id, "category_id": 1, "bbox": list(box),
            "area": 900.0, "iscrowd": 0, "num_keypoints": k, "keypoints": kp,
            "segmentation": [[10, 10, 40, 10, 40, 50, 10, 50]]}


def _good():
    return {"images": [{"id": i, "file_name": f"{i}.png", "height": 64, "width": 64}
                       for i in (1, 2, 3)],
            "annotations": [_person(10 + i, i) for i in (1, 2, 3)],
            "categories": [{"id": 1, "name": "person", "keypoints": list(COCO.names)}]}


def _write(tmp_path, data):
    for img in data["images"]:
        if isinstance(img, dict) and img.get("file_name"):
            cv2.imwrite(str(tmp_path / img["file_name"]), np.zeros((64, 64, 3), np.uint8))
    path = tmp_path / "ann.json"
    path.write_text(json.dumps(data))
    return path


# (mutation, what the message names) for issue cases 2-5 and the other checks
CASES = {
    "no_file_name": (lambda d: d["images"][1].pop("file_name"), "image id 2: missing 'file_name'"),
    "zero_bbox": (lambda d: d["annotations"][0].update(bbox=[10, 10, 0, 0]),
                  "annotation id 11: bbox [10, 10, 0, 0] has zero or negative size"),
    "negative_bbox": (lambda d: d["annotations"][0].update(bbox=[10, 10, 5, -0.9375]),
                      "annotation id 11: bbox [10, 10, 5, -0.9375] has zero or negative size"),
    "48_keypoints": (lambda d: d["annotations"][2].update(keypoints=[1.0] * 48),
                     "annotation id 13: keypoints has 48 values, expected 51"),
    "nan_keypoint": (lambda d: d["annotations"][1]["keypoints"].__setitem__(0, float("nan")),
                     "annotation id 12: keypoints hold NaN"),
    "inf_bbox": (lambda d: d["annotations"][1].update(bbox=[0, 0, float("inf"), 3]),
                 "annotation id 12: bbox [0, 0, inf, 3] is not 4 finite numbers"),
    "dangling_image_id": (lambda d: d["annotations"][1].update(image_id=99),
                          "annotation id 12: image_id 99 names no valid image entry"),
    "bad_visibility": (lambda d: d["annotations"][1]["keypoints"].__setitem__(2, 7),
                       "annotation id 12: keypoint visibility not in {0, 1, 2}"),
    "zero_height_image": (lambda d: d["images"][0].update(height=0),
                          "image id 1: 'height' is 0"),
    "no_bbox": (lambda d: d["annotations"][0].pop("bbox"), "annotation id 11: bbox None"),
    "unknown_category": (lambda d: d["annotations"][0].update(category_id=5),
                         "annotation id 11: category_id 5 is not in 'categories'"),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_strict_refuses_in_one_line_naming_file_and_entry(tmp_path, name):
    data = _good()
    CASES[name][0](data)
    path = _write(tmp_path, data)
    before = path.read_bytes()
    with pytest.raises(ValueError) as e:
        CocoKeypoints(path, tmp_path, main_min_area=0, bad_annotations="strict")
    msg = str(e.value)
    assert "\n" not in msg and str(path) in msg and CASES[name][1] in msg, msg
    assert "--bad_annotations skip" in msg
    assert path.read_bytes() == before  # the reader never rewrites the file


@pytest.mark.parametrize("name", sorted(CASES))
def test_skip_drops_the_bad_entry_with_one_summary_line(tmp_path, caplog, name):
    data = _good()
    CASES[name][0](data)
    path = _write(tmp_path, data)
    with caplog.at_level(logging.WARNING):
        src = CocoKeypoints(path, tmp_path, main_min_area=0)  # default: skip
    lines = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
    assert len(lines) == 1 and str(path) in lines[0], lines
    entry = CASES[name][1].split(":")[0]            # "image id 2" / "annotation id 11"
    kind, _, ident = entry.split()
    assert f"1 of 3 {kind}s" in lines[0] and f"(id {ident})" in lines[0]
    # what is left is whole: every sample builds with the K of the spec and a positive scale
    samples = src.samples(64)
    assert samples and all(s.keypoints.shape[1:] == (17, 3) and s.scale_provided > 0
                           and np.isfinite(s.keypoints).all() for s in samples)
    if kind == "image":  # its annotations go with it
        assert len(src) == 2 and src.num_annotations == 2
        assert list(src.skipped.values()) == [[int(ident)], [10 + int(ident)]]
    else:
        assert src.num_annotations == 2 and list(src.skipped.values()) == [[int(ident)]]


def test_a_clean_file_logs_nothing_and_is_returned_unchanged(caplog):
    data = _good()
    with caplog.at_level(logging.WARNING):
        clean, skipped = validate_coco(data, "x.json")
    assert clean is data and skipped == {} and not caplog.records


def test_summary_counts_and_names_several_reasons():
    data = _good()
    data["images"].append({"id": 4, "file_name": "4.png", "height": 64, "width": 64})
    data["annotations"] += [_person(20 + i, 4, box=(1, 1, 0, 5)) for i in range(7)]
    data["annotations"].append(_person(30, 4, k=16))
    before = copy.deepcopy(data)
    clean, skipped = validate_coco(data, "x.json")
    assert data == before  # the caller's dict is not modified
    assert len(clean["annotations"]) == 3
    assert skipped[("annotation", "bbox [1, 1, 0, 5] has zero or negative size")] == \
        list(range(20, 27))
    assert skipped[("annotation", "keypoints has 48 values, expected 51 (17 x 3)")] == [30]


def test_keypoint_length_follows_the_spec():
    """A 16-keypoint spec accepts 48 values and refuses COCO's 51."""
    data = _good()
    data["annotations"][0]["keypoints"] = [1.0] * 48

    class Spec16:  # validate_coco reads only num_keypoints from the spec
        num_keypoints = 16
    clean, skipped = validate_coco(data, "x.json", spec=Spec16())
    assert [a["id"] for a in clean["annotations"]] == [11]
    assert sorted(i for v in skipped.values() for i in v) == [12, 13]


def test_unknown_mode_is_refused():
    with pytest.raises(ValueError, match="bad_annotations must be one of skip, strict"):
        validate_coco(_good(), "x.json", mode="lenient")
