"""COCO reader: records, masks (crowd, zero-keypoint persons), main persons, bad input."""
import json
import logging
import shutil

import numpy as np
import pytest

from keras_pose.data.coco import CocoKeypoints


@pytest.fixture(scope="module")
def sample(coco_sample_dir):
    return CocoKeypoints(coco_sample_dir / "test_coco.json", coco_sample_dir)


def _rle_box(h, w, x0, y0, x1, y1):
    """Uncompressed RLE (column-major, as COCO crowd annotations store it) of a box."""
    m = np.zeros((h, w), np.uint8)
    m[y0:y1, x0:x1] = 1
    flat = m.flatten(order="F")
    counts, cur, run = [], 0, 0
    for v in flat:
        if v != cur:
            counts.append(run)
            cur, run = v, 0
        run += 1
    counts.append(run)
    return {"counts": counts, "size": [h, w]}, m


def test_record_counts(sample):
    assert len(sample) == 4
    assert sample.num_annotations == 14
    nkp = np.concatenate([r.persons.num_keypoints for r in sample.records])
    assert (nkp == 0).sum() == 2
    rec = sample.record(40083)
    assert (rec.height, rec.width) == (333, 500)
    assert rec.persons.keypoints.shape == (3, 17, 3)
    assert rec.persons.boxes.shape == (3, 4)
    # num_keypoints agrees with the labelled flags in the keypoint arrays
    for r in sample.records:
        np.testing.assert_array_equal((r.persons.keypoints[..., 2] > 0).sum(1), r.persons.num_keypoints)
    assert sample.missing_images == []


def test_person_and_ignore_masks(sample):
    # 40083: the third person (id 1202706) has no keypoints -> ignored; persons 1, 2 are not.
    rec = sample.record(40083)
    pm, ig = sample.person_mask(40083), sample.ignore_mask(40083)
    assert pm.shape == ig.shape == (rec.height, rec.width) and pm.dtype == np.uint8
    assert set(np.unique(ig)) <= {0, 1}
    zero = sample.coco.annToMask(sample.coco.anns[1202706])
    full = sample.coco.annToMask(sample.coco.anns[198196])
    assert ig[zero > 0].mean() > 0.99
    assert ig[full > 0].mean() < 0.05          # only where it overlaps the zero-kp person
    assert pm[full > 0].all() and pm[zero > 0].all()
    assert (ig <= pm).all()                      # ignored regions here are persons
    # an image without zero-keypoint persons or crowds ignores nothing
    assert sample.ignore_mask(785).sum() == 0
    assert sample.person_mask(785).sum() > 10000


def _with_crowds(tmp_path, src_dir, boxes):
    data = json.loads((src_dir / "test_coco.json").read_text())
    img = next(i for i in data["images"] if i["id"] == 197388)
    h, w = img["height"], img["width"]
    masks = []
    for k, b in enumerate(boxes):
        rle, m = _rle_box(h, w, *b)
        masks.append(m)
        data["annotations"].append({
            "id": 900000 + k, "image_id": 197388, "category_id": 1, "iscrowd": 1,
            "segmentation": rle, "area": float(m.sum()), "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]],
            "num_keypoints": 0, "keypoints": [0] * 51})
    (tmp_path / "ann.json").write_text(json.dumps(data))
    return CocoKeypoints(tmp_path / "ann.json", src_dir), masks


def test_crowd_in_ignore_mask_minus_earlier_persons(tmp_path, coco_sample_dir):
    coco, (crowd,) = _with_crowds(tmp_path, coco_sample_dir, [(100, 50, 400, 300)])
    ig, pm = coco.ignore_mask(197388), coco.person_mask(197388)
    persons = np.zeros_like(crowd)
    for a in coco.coco.imgToAnns[197388]:
        if not a["iscrowd"]:
            persons |= coco.coco.annToMask(a)
    # crowd region minus the (earlier) non-crowd persons is ignored, nothing else is
    np.testing.assert_array_equal(ig, crowd & (1 - persons))
    np.testing.assert_array_equal(pm, crowd | persons)
    # the crowd annotation is never a main person and adds no sample persons
    assert len(coco.main_persons(197388)) == 5
    assert all(s.keypoints.shape[0] == 5 for s in coco.samples() if s.image_id == 197388)


def test_two_crowds_are_united(tmp_path, coco_sample_dir):
    coco, (c1, c2) = _with_crowds(tmp_path, coco_sample_dir, [(0, 0, 60, 60), (500, 300, 640, 392)])
    ig = coco.ignore_mask(197388)
    persons = np.zeros_like(c1)
    for a in coco.coco.imgToAnns[197388]:
        if not a["iscrowd"]:
            persons |= coco.coco.annToMask(a)
    np.testing.assert_array_equal(ig, (c1 | c2) & (1 - persons))
    assert ig[:60, :60].sum() > 0 and ig[300:, 500:].sum() > 0


def test_main_person_selection(sample):
    # 40083: persons 0, 1 (14 and 15 keypoints) qualify; person 2 has none.
    assert sample.main_persons(40083) == [0, 1]
    # 196141: person 2 has 0 keypoints; the others have >= 12 and area >= 32*32.
    assert sample.main_persons(196141) == [0, 1, 3, 4]
    samples = sample.samples(input_height=384)
    assert len(samples) == 12
    s = next(s for s in samples if s.image_id == 40083 and s.main_index == 1)
    p = sample.record(40083).persons
    np.testing.assert_allclose(s.objpos, p.boxes[1, :2] + p.boxes[1, 2:] / 2, rtol=1e-6)
    assert s.scale_provided == pytest.approx(p.boxes[1, 3] / 384)
    np.testing.assert_array_equal(s.keypoints[0], p.keypoints[1])   # main person first
    assert s.keypoints.shape == (2, 17, 3)                           # zero-kp person left out


def test_main_person_rules_on_edited_file(tmp_path, coco_sample_dir):
    data = json.loads((coco_sample_dir / "test_coco.json").read_text())
    anns = [a for a in data["annotations"] if a["image_id"] == 197388]
    # too few keypoints, too small, and a near-duplicate of the first person
    anns[1]["num_keypoints"] = 4
    anns[2]["area"] = 32 * 32 - 1
    b0 = anns[0]["bbox"]
    # same box shifted by 5 px: its centre is well within 0.3 * max(w, h) of person 0
    dup = dict(anns[0], id=999999, bbox=[b0[0] + 5, b0[1] + 5, b0[2], b0[3]])
    data["annotations"].append(dup)
    (tmp_path / "a.json").write_text(json.dumps(data))
    coco = CocoKeypoints(tmp_path / "a.json", coco_sample_dir)
    assert coco.main_persons(197388) == [0, 3, 4]
    # the duplicate still appears as an extra person in the samples
    s0 = next(s for s in coco.samples() if s.image_id == 197388 and s.main_index == 0)
    assert s0.keypoints.shape[0] == 6


def test_main_person_thresholds_are_configurable(coco_sample_dir):
    # 196141: only person 4 has >= 16 keypoints; a huge area keeps no one
    strict = CocoKeypoints(coco_sample_dir / "test_coco.json", coco_sample_dir, main_min_keypoints=16)
    assert strict.main_persons(196141) == [4] and strict.main_persons(40083) == []
    big = CocoKeypoints(coco_sample_dir / "test_coco.json", coco_sample_dir, main_min_area=1e6)
    assert big.samples() == []
    with pytest.raises(ValueError, match="main_min_area"):
        CocoKeypoints(coco_sample_dir / "test_coco.json", coco_sample_dir, main_min_area=-1)


def test_from_dir_layout(tmp_path, coco_sample_dir):
    (tmp_path / "annotations").mkdir()
    (tmp_path / "val2017").mkdir()
    shutil.copy(coco_sample_dir / "test_coco.json", tmp_path / "annotations" / "person_keypoints_val2017.json")
    for f in coco_sample_dir.glob("*.jpg"):
        shutil.copy(f, tmp_path / "val2017" / f.name)
    coco = CocoKeypoints.from_dir(tmp_path, "val2017")
    assert len(coco) == 4
    assert len(CocoKeypoints.from_dir(tmp_path, "val2017", main_min_area=1e6).samples()) == 0


def test_bad_json_names_the_file(tmp_path):
    bad = tmp_path / "broken.json"
    bad.write_text('{"images": [')
    with pytest.raises(ValueError, match="broken.json.*not valid JSON"):
        CocoKeypoints(bad, tmp_path)
    inst = tmp_path / "instances.json"
    inst.write_text(json.dumps({"images": [], "annotations": [{"id": 1, "bbox": [0, 0, 1, 1]}]}))
    with pytest.raises(ValueError, match="instances.json.*no person keypoint"):
        CocoKeypoints(inst, tmp_path)
    with pytest.raises(ValueError, match="nothere.json.*not found"):
        CocoKeypoints(tmp_path / "nothere.json", tmp_path)


def test_missing_images_folder(tmp_path, coco_sample_dir):
    with pytest.raises(ValueError, match="images folder not found: .*train2017"):
        CocoKeypoints(coco_sample_dir / "test_coco.json", tmp_path / "train2017")


def test_missing_images_counted_and_skipped(tmp_path, coco_sample_dir, caplog):
    for f in list(coco_sample_dir.glob("*.jpg"))[:3]:
        shutil.copy(f, tmp_path / f.name)
    with caplog.at_level(logging.WARNING, logger="keras_pose.data.coco"):
        coco = CocoKeypoints(coco_sample_dir / "test_coco.json", tmp_path)
    assert len(coco) == 3 and len(coco.missing_images) == 1
    assert "1 of 4 image files missing" in caplog.text
