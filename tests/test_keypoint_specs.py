"""Keypoint spec files, built-in specs, the derived body-part graph and round trips.

The COCO layout is checked against the Simple Pose authors' tables (their
config.py: limb from/to lists, the redundant ones, the flip permutations),
so the generic spec reproduces the paper's channels exactly.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

from keras_pose import keypoint_file, keypoint_specs
from keras_pose.data.skeleton_poses import roundtrip_ap
from keras_pose.skeleton import COCO, KeypointSpec, load_spec

# The authors' tables (docs/method_bottom_up.md §1), written out independently.
PAPER_FROM = (1, 1, 1, 1, 1, 0, 0, 14, 15, 1, 2, 3, 1, 5, 6, 1, 8, 9, 1, 11, 12, 0, 0, 2, 8, 5,
              11, 16, 17, 8)
PAPER_TO = (0, 14, 15, 16, 17, 14, 15, 16, 17, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 2, 5, 8,
            12, 11, 9, 2, 5, 11)
PAPER_REDUNDANT = (1, 2, 3, 4, 21, 22, 23, 24, 25, 26, 27, 28, 29)
PAPER_LIMB_FLIP = (0, 2, 1, 4, 3, 6, 5, 8, 7, 12, 13, 14, 9, 10, 11, 18, 19, 20, 15, 16, 17, 22,
                   21, 25, 26, 23, 24, 28, 27, 29)
PAPER_POINT_FLIP = (0, 1, 5, 6, 7, 2, 3, 4, 11, 12, 13, 8, 9, 10, 15, 14, 17, 16, 18, 19)
PAPER_TO_COCO = (0, -1, 6, 8, 10, 5, 7, 9, 12, 14, 16, 11, 13, 15, 2, 1, 4, 3)
BUILTIN = ("coco", "crowdpose", "mpii", "ap10k")


def test_coco_is_the_papers_layout():
    assert COCO.limb_from == PAPER_FROM and COCO.limb_to == PAPER_TO
    assert COCO.redundant_limbs == PAPER_REDUNDANT
    assert COCO.limb_flip_perm == PAPER_LIMB_FLIP
    assert COCO.keypoint_flip_perm == PAPER_POINT_FLIP
    assert COCO.internal_to_coco == PAPER_TO_COCO
    assert (COCO.num_keypoints, COCO.num_internal, COCO.num_limbs, COCO.num_channels) == \
        (17, 18, 30, 50)
    w = COCO.channel_weights()
    assert w[:30].tolist() == [1] * 30 and w[30:48].tolist() == [3] * 18 and w[48] == 0.1


def test_neck_is_synthesised_from_the_shoulders():
    kp = np.zeros((1, 17, 3), np.float32)
    kp[0, 5] = (10, 20, 2)
    kp[0, 6] = (30, 40, 1)
    neck = COCO.to_internal(kp)[0, COCO.internal_names.index("neck")]
    assert neck.tolist() == [20, 30, 1]
    kp[0, 6, 2] = 0
    assert COCO.to_internal(kp)[0, 1].tolist() == [0, 0, 0]


@pytest.mark.parametrize("name", BUILTIN)
def test_builtin_specs_round_trip_through_files(name, tmp_path):
    spec = load_spec(name)
    assert spec.name == name
    path = spec.save(tmp_path / f"{name}.json")
    again = load_spec(str(path))
    assert again == spec
    assert np.array_equal(again.channel_flip_perm, spec.channel_flip_perm)
    # a mirrored map's channels mirrored again are the original ones
    perm = spec.channel_flip_perm
    assert np.array_equal(perm[perm], np.arange(spec.num_channels))
    assert json.loads(open(path).read())["keypoints"] == list(spec.names)


def test_builtin_sizes():
    sizes = {n: (load_spec(n).num_keypoints, load_spec(n).num_internal) for n in BUILTIN}
    assert sizes == {"coco": (17, 18), "crowdpose": (14, 14), "mpii": (16, 16), "ap10k": (17, 17)}
    assert load_spec("AP-10K") is load_spec("ap10k")


def test_legacy_field_dicts_still_load():
    """config.json files of earlier runs stored the dataclass fields."""
    legacy = {"names": list(COCO.names), "sigmas": list(COCO.sigmas),
              "flip_pairs": [list(p) for p in COCO.flip_pairs],
              "skeleton": [list(p) for p in COCO.skeleton],
              "internal_names": list(COCO.internal_names),
              "internal_to_coco": list(PAPER_TO_COCO), "limb_from": list(PAPER_FROM),
              "limb_to": list(PAPER_TO), "redundant_limbs": list(PAPER_REDUNDANT),
              "draw_limbs": [0], "limb_flip_perm": list(PAPER_LIMB_FLIP),
              "keypoint_flip_perm": list(PAPER_POINT_FLIP), "keypoint_weight": 3.0,
              "person_mask_weight": 0.1}
    assert KeypointSpec.from_dict(legacy) == COCO


def test_derived_graph_rule_on_the_papers_coco_tree():
    """Pairs through a branching point of COCO's tree: 13 redundant limbs, 7 of the paper's."""
    tree = [COCO.limbs[k] for k in COCO.tree_limbs]
    limbs, red = keypoint_file.derive_body_parts(COCO.num_internal, tree)
    assert {frozenset(e) for e in limbs[:len(tree)]} == {frozenset(e) for e in tree}
    paper = {frozenset(COCO.limbs[k]) for k in COCO.redundant_limbs}
    mine = {frozenset(limbs[k]) for k in red}
    assert len(mine) == 13 and len(mine & paper) == 7


def test_skeleton_only_spec_derives_a_flip_closed_graph(tmp_path):
    d = {"keypoints": ["head", "l_hand", "r_hand", "tail", "l_foot", "r_foot"],
         "sigmas": [0.05] * 6, "flip_pairs": [["l_hand", "r_hand"], ["l_foot", "r_foot"]],
         "skeleton": [["head", "l_hand"], ["head", "r_hand"], ["head", "tail"],
                      ["tail", "l_foot"], ["tail", "r_foot"]]}
    p = tmp_path / "toy.json"
    p.write_text(json.dumps(d))
    spec = load_spec(str(p))
    assert len(spec.tree_limbs) == 5
    # head and tail both branch: their neighbour pairs are the redundant limbs
    red = {frozenset(spec.internal_names[i] for i in spec.limbs[k]) for k in spec.redundant_limbs}
    assert {"l_hand", "r_hand"} in [set(r) for r in red]
    assert {"l_foot", "r_foot"} in [set(r) for r in red]
    assert sorted(spec.limb_flip_perm) == list(range(spec.num_limbs))
    assert roundtrip_ap(spec, num_images=3, grid=(3, 3))["AP"] >= 0.95


@pytest.mark.parametrize("d, message", [
    ({"keypoints": ["a", "b"], "sigmas": [0.1]}, "1 sigmas for 2 keypoints"),
    ({"keypoints": ["a", "b"], "sigmas": [0.1, 0.1], "skeleton": [["a", "c"]]}, "unknown point 'c'"),
    ({"keypoints": ["a", "b", "c"], "sigmas": [0.1] * 3, "skeleton": [["a", "b"]]},
     "not connected"),
    ({"keypoints": ["a", "b", "c"], "sigmas": [0.1] * 3, "flip_pairs": [["b", "c"]],
      "body_parts": {"limbs": [["a", "b"], ["a", "c"], ["b", "c"], ["a", "b"]]}}, "listed twice"),
    ({"keypoints": ["a", "l", "r"], "sigmas": [0.1] * 3, "flip_pairs": [["l", "r"]],
      "body_parts": {"limbs": [["a", "l"], ["l", "r"]]}}, "mirror image of limb a-l (a-r)"),
    ({"keypoints": ["a", "b"], "sigmas": [0.1] * 2, "synthesized": {"m": ["a", "b"]},
      "skeleton": [["a", "b"]]}, "give body_parts.limbs"),
    ({"keypoints": ["a", "b"], "sigmas": [0.1] * 2, "colour": 1}, "unknown keys ['colour']"),
])
def test_bad_spec_files_give_one_line_errors(d, message, tmp_path):
    p = tmp_path / "bad.json"
    p.write_text(json.dumps(d))
    with pytest.raises(ValueError) as e:
        load_spec(str(p))
    assert message in str(e.value) and str(p) in str(e.value) and "\n" not in str(e.value)


def test_unknown_name_and_broken_json(tmp_path):
    with pytest.raises(ValueError, match="neither a built-in spec"):
        load_spec("h36m")
    p = tmp_path / "broken.json"
    p.write_text("{")
    with pytest.raises(ValueError, match="broken.json: not valid JSON"):
        load_spec(str(p))


@pytest.mark.parametrize("grouping", ["paper", "matched"])
@pytest.mark.parametrize("name", BUILTIN)
def test_roundtrip_ap_on_scenes_from_the_skeleton(name, grouping):
    """GT -> encode -> decode -> pycocotools AP (the spec's sigmas) on 3x3 crowds."""
    stats = roundtrip_ap(load_spec(name), num_images=4, grid=(3, 3), seed=1, grouping=grouping)
    assert stats["AP"] >= 0.95 and stats["num_detected"] == stats["num_persons"], stats


def test_missing_joints_cost_more_without_redundant_limbs():
    """The redundant limbs keep a person whole when a tree joint is unlabelled."""
    import dataclasses
    spec = load_spec("crowdpose")
    tree = dataclasses.replace(spec, limbs=tuple(spec.limbs[k] for k in spec.tree_limbs),
                               redundant_limbs=())
    full = roundtrip_ap(spec, num_images=4, grid=(3, 3), drop=0.15)["AP"]
    bare = roundtrip_ap(tree, num_images=4, grid=(3, 3), drop=0.15)["AP"]
    assert full > bare + 0.05, (full, bare)


def test_builtin_tables_are_files_of_the_documented_format():
    for name, d in keypoint_specs.BUILTIN.items():
        assert set(d) <= keypoint_file._TOP_KEYS, name


def test_crowd_index_groups_score_their_own_images():
    from keras_pose.data.skeleton_poses import coco_ground_truth, random_scene
    from keras_pose.evaluation.crowd_index import evaluate_by_crowd_index

    spec = load_spec("crowdpose")
    rng = np.random.default_rng(0)
    scenes = [random_scene(spec, rng, (256, 256), (2, 2)) for _ in range(3)]
    gt = coco_ground_truth(spec, scenes, (256, 256))
    for img, ci in zip(gt["images"], (0.05, 0.5, 0.9)):
        img["crowdIndex"] = ci
    # perfect answers on the easy and hard images, nothing on the medium one
    results = [{"image_id": i, "category_id": 1, "keypoints": kp.reshape(-1).tolist(), "score": 1}
               for i, kps in zip((1, 3), (scenes[0], scenes[2])) for kp in kps]
    ap = evaluate_by_crowd_index(results, gt, spec.sigmas)
    assert ap == {"AP_easy": 1.0, "AP_medium": 0.0, "AP_hard": 1.0}
    del gt["images"][0]["crowdIndex"], gt["images"][1]["crowdIndex"], gt["images"][2]["crowdIndex"]
    assert evaluate_by_crowd_index(results, gt, spec.sigmas) == {}


def test_the_documented_example_file_loads(tmp_path):
    import pathlib
    import re
    doc = (pathlib.Path(__file__).resolve().parent.parent / "docs" / "keypoints.md").read_text()
    block = re.search(r"```json\n(.*?)```", doc, re.S).group(1)
    p = tmp_path / "quadruped.json"
    p.write_text(block)
    spec = load_spec(str(p))
    assert spec.name == "quadruped" and spec.num_keypoints == 7 and spec.num_limbs > 6
    assert roundtrip_ap(spec, num_images=2, grid=(3, 3))["AP"] >= 0.95


def test_several_categories_are_scored_category_agnostic():
    """AP-10K labels species as categories; predictions carry none (category_id 1)."""
    from keras_pose.data.skeleton_poses import coco_ground_truth, random_scene
    from keras_pose.evaluation.coco_eval import evaluate_keypoints

    spec = load_spec("ap10k")
    scenes = [random_scene(spec, np.random.default_rng(3), (256, 256), (2, 2))]
    gt = coco_ground_truth(spec, scenes, (256, 256))
    gt["categories"].append(dict(gt["categories"][0], id=2, name="cat"))
    for a in gt["annotations"][::2]:
        a["category_id"] = 2
    results = [{"image_id": 1, "category_id": 1, "keypoints": kp.reshape(-1).tolist(), "score": 1}
               for kp in scenes[0]]
    assert evaluate_keypoints(results, gt, sigmas=spec.sigmas)["AP"] == 1.0
