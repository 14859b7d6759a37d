"""Keypoint spec files (JSON) <-> KeypointSpec, and the derived body-part graph.

The file (``docs/keypoints.md`` has an example)::

    {"format": "keras_pose.keypoints", "version": 1, "name": "crowdpose",
     "keypoints": ["left_shoulder", ...],            K names, dataset order
     "sigmas": [0.079, ...],                         K OKS sigmas
     "flip_pairs": [["left_shoulder", "right_shoulder"], ...],
     "skeleton": [["left_ankle", "left_knee"], ...], drawing lines
     "synthesized": {"neck": ["left_shoulder", "right_shoulder"]},   optional midpoints
     "body_parts": {                                 optional (bottom-up)
        "order": [...],      map order of keypoints + synthesised points
        "limbs": [["neck", "head"], ...],            grouping order
        "redundant": [["head", "right_shoulder"], ...]},   subset of limbs
     "loss_weights": {"keypoints": 3.0, "person_mask": 0.1}}   optional

A point is named by its name, or by its 0-based index (into ``keypoints`` for
``flip_pairs`` / ``skeleton``, into ``body_parts.order`` for limbs). Without
``body_parts.limbs`` the graph is derived from the skeleton
(``derive_body_parts``). Imports without TensorFlow.
"""
from __future__ import annotations

import json
import os

import numpy as np

FORMAT = "keras_pose.keypoints"
VERSION = 1
_TOP_KEYS = {"format", "version", "name", "keypoints", "sigmas", "flip_pairs", "skeleton",
             "synthesized", "body_parts", "loss_weights"}
# Fields of the KeypointSpec dataclass that runs saved before the file format existed.
_LEGACY_KEYS = {"names", "sigmas", "flip_pairs", "skeleton", "internal_names", "internal_to_coco",
                "limb_from", "limb_to", "redundant_limbs", "draw_limbs", "limb_flip_perm",
                "keypoint_flip_perm", "keypoint_weight", "person_mask_weight"}


# ------------------------------------------------------------- derived graph
def derive_body_parts(num_points: int, edges, names=None, mirror=None) -> tuple:
    """Body parts from a skeleton alone: (limbs, redundant indices).

    The rule (``docs/keypoints.md``, "Derived body parts"):

    1. tree: the shortest-path (breadth-first) tree of the skeleton graph from
       its centre (the point with the smallest eccentricity; on ties a point
       that is its own mirror image, then the lowest index), as the Simple
       Pose tree hangs from the neck (docs/method_bottom_up.md §1.2); limbs are
       listed chain by chain (depth-first over that tree), parents first, so
       grouping always extends a person it has started;
    2. redundant: the skeleton edges the tree does not use (they close
       cycles), then, at every branching point of the tree (3 or more tree
       edges), every pair of its tree neighbours: points two edges apart
       through a junction, like the paper's nose-shoulder, shoulder-hip and
       hip-hip connections. On the paper's own COCO tree this yields 13
       redundant limbs, 7 of them the paper's 13.

    Args:
        num_points: J points, indices 0..J-1.
        edges: (from, to) index pairs (the skeleton).
        names: optional (J,) names for error messages.
        mirror: optional (J,) mirror image of each point (the flip map).
    Returns:
        (limbs: tuple of (from, to), redundant: tuple of indices into limbs).
    """
    name = (lambda i: names[i]) if names else str  # noqa: E731
    adj = [[] for _ in range(num_points)]
    for a, b in edges:
        if a != b and b not in adj[a]:
            adj[a].append(b)
            adj[b].append(a)
    if num_points == 1:
        return (), ()

    def bfs(root):
        dist, parent, order = {root: 0}, {root: None}, [root]
        for v in order:
            for u in adj[v]:
                if u not in dist:
                    dist[u], parent[u] = dist[v] + 1, v
                    order.append(u)
        return dist, parent

    dist0, _ = bfs(0)
    if len(dist0) < num_points:
        lost = [name(i) for i in range(num_points) if i not in dist0]
        raise ValueError(f"the skeleton is not connected: {', '.join(lost)} cannot be reached "
                         f"from {name(0)}; give body_parts.limbs explicitly")
    ecc = [max(bfs(r)[0].values()) for r in range(num_points)]
    selfish = [mirror is not None and mirror[r] == r for r in range(num_points)]
    root = min(range(num_points), key=lambda r: (ecc[r], not selfish[r], r))
    _, parent = bfs(root)
    children = {v: [u for u in adj[v] if parent.get(u) == v] for v in range(num_points)}
    limbs = []

    def walk(v):
        for c in children[v]:
            limbs.append((v, c))
        for c in children[v]:
            walk(c)
    walk(root)
    have = {frozenset(e) for e in limbs}
    redundant = []
    for a, b in edges:
        if a != b and frozenset((a, b)) not in have:
            have.add(frozenset((a, b)))
            redundant.append((a, b))
    for v in [root] + [c for _, c in limbs]:
        around = ([parent[v]] if parent[v] is not None else []) + children[v]
        if len(around) < 3:
            continue
        for i, a in enumerate(around):
            for b in around[i + 1:]:
                if frozenset((a, b)) not in have:
                    have.add(frozenset((a, b)))
                    redundant.append((a, b))
    n_tree = len(limbs)
    return tuple(limbs) + tuple(redundant), tuple(range(n_tree, n_tree + len(redundant)))


def _mirror_closed(limbs, redundant, point_flip) -> tuple:
    """Add, as redundant, the mirror image of any limb whose mirror is missing."""
    limbs, redundant = list(limbs), list(redundant)
    have = {frozenset(e) for e in limbs}
    for a, b in list(limbs):
        m = (point_flip[a], point_flip[b])
        if frozenset(m) not in have:
            have.add(frozenset(m))
            redundant.append(len(limbs))
            limbs.append(m)
    return tuple(limbs), tuple(redundant)


# ---------------------------------------------------------------- completion
def _point_flip(spec) -> tuple:
    """(J,) map-point mirror: flip pairs, synthesised points by their mirrored parents."""
    kperm = np.arange(len(spec.names))
    for a, b in spec.flip_pairs:
        kperm[a], kperm[b] = b, a
    syn = {s[0]: frozenset((s[1], s[2])) for s in spec.synthesized}
    by_parents = {v: k for k, v in syn.items()}
    out = []
    for n in spec.internal_names:
        if n in spec.names:
            out.append(spec.internal_names.index(spec.names[kperm[spec.names.index(n)]]))
            continue
        mirror = frozenset(int(kperm[p]) for p in syn[n])
        if mirror not in by_parents:
            raise ValueError(f"synthesised point {n!r} has no mirror image (no synthesised point "
                             f"between {' and '.join(spec.names[p] for p in mirror)})")
        out.append(spec.internal_names.index(by_parents[mirror]))
    return tuple(out)


def complete(spec) -> None:
    """Fill a KeypointSpec's defaults, validate it and derive its flip maps (in place)."""
    set_ = lambda k, v: object.__setattr__(spec, k, v)  # noqa: E731
    k = len(spec.names)
    problems = []
    if k == 0:
        raise ValueError("invalid KeypointSpec: no keypoints")
    if len(set(spec.names)) != k:
        problems.append("keypoint names are not unique")
    if len(spec.sigmas) != k:
        problems.append(f"{len(spec.sigmas)} sigmas for {k} keypoints")
    elif any(not (isinstance(s, (int, float)) and s > 0) for s in spec.sigmas):
        problems.append("sigmas must be positive numbers")
    for what, pairs in (("flip pair", spec.flip_pairs), ("skeleton line", spec.skeleton)):
        if any(len(p) != 2 or not all(isinstance(i, int) and 0 <= i < k for i in p) for p in pairs):
            problems.append(f"a {what} is not two keypoint indices in 0..{k - 1}")
    flat = [i for p in spec.flip_pairs for i in p]
    if len(flat) != len(set(flat)) or any(a == b for a, b in spec.flip_pairs):
        problems.append("a keypoint appears in more than one flip pair")
    syn_names = []
    for s in spec.synthesized:
        if len(s) != 3 or not isinstance(s[0], str) or \
                not all(isinstance(i, int) and 0 <= i < k for i in s[1:]):
            problems.append(f"synthesized entry {s!r} is not (name, keypoint a, keypoint b)")
        elif s[0] in spec.names or s[0] in syn_names:
            problems.append(f"synthesized point {s[0]!r} duplicates another name")
        else:
            syn_names.append(s[0])
    if problems:
        raise ValueError("invalid KeypointSpec: " + "; ".join(problems))
    default_order = tuple(spec.names) + tuple(syn_names)
    if spec.internal_names is None:
        set_("internal_names", default_order)
    elif sorted(spec.internal_names) != sorted(default_order):
        raise ValueError("invalid KeypointSpec: body_parts.order must list every keypoint and "
                         "synthesised point exactly once")
    j = len(spec.internal_names)
    point_flip = _point_flip(spec)
    if spec.limbs is None:
        if spec.synthesized:
            raise ValueError("invalid KeypointSpec: with synthesized points give body_parts.limbs "
                             "(the skeleton does not say how they connect)")
        to_map = [spec.internal_names.index(n) for n in spec.names]
        edges = [(to_map[a], to_map[b]) for a, b in spec.skeleton]
        limbs, red = derive_body_parts(j, edges, spec.internal_names, point_flip)
        limbs, red = _mirror_closed(limbs, red, point_flip)
        set_("limbs", limbs)
        if spec.redundant_limbs is None:
            set_("redundant_limbs", red)
    if spec.redundant_limbs is None:
        set_("redundant_limbs", ())
    L = len(spec.limbs)
    if any(len(e) != 2 or not all(isinstance(i, int) and 0 <= i < j for i in e) or e[0] == e[1]
           for e in spec.limbs):
        problems.append(f"a limb is not two different point indices in 0..{j - 1}")
    elif len({frozenset(e) for e in spec.limbs}) != L:
        problems.append("a limb is listed twice")
    if any(not (isinstance(i, int) and 0 <= i < L) for i in spec.redundant_limbs) or \
            len(set(spec.redundant_limbs)) != len(spec.redundant_limbs):
        problems.append("redundant limbs must be distinct limb indices")
    if problems:
        raise ValueError("invalid KeypointSpec: " + "; ".join(problems))
    if j > 1:
        used = {i for e in spec.limbs for i in e}
        lonely = [spec.internal_names[i] for i in range(j) if i not in used]
        if lonely:
            raise ValueError(f"invalid KeypointSpec: {', '.join(lonely)} belong to no limb, so "
                             "grouping could never give them to a person")
    index = {frozenset(e): i for i, e in enumerate(spec.limbs)}
    limb_flip = []
    for a, b in spec.limbs:
        m = frozenset((point_flip[a], point_flip[b]))
        if m not in index:
            raise ValueError(f"invalid KeypointSpec: the mirror image of limb "
                             f"{spec.internal_names[a]}-{spec.internal_names[b]} "
                             f"({spec.internal_names[point_flip[a]]}-"
                             f"{spec.internal_names[point_flip[b]]}) is not a limb")
        limb_flip.append(index[m])
    set_("_point_flip", point_flip)
    set_("_limb_flip", tuple(limb_flip))


# ------------------------------------------------------------- file <-> spec
def to_file_dict(spec) -> dict:
    """The spec file content of a KeypointSpec (names, not indices)."""
    n, m = spec.names, spec.internal_names
    return {
        "format": FORMAT, "version": VERSION, "name": spec.name,
        "keypoints": list(n),
        "sigmas": [float(s) for s in spec.sigmas],
        "flip_pairs": [[n[a], n[b]] for a, b in spec.flip_pairs],
        "skeleton": [[n[a], n[b]] for a, b in spec.skeleton],
        "synthesized": {s: [n[a], n[b]] for s, a, b in spec.synthesized},
        "body_parts": {"order": list(m),
                       "limbs": [[m[a], m[b]] for a, b in spec.limbs],
                       "redundant": [[m[spec.limbs[i][0]], m[spec.limbs[i][1]]]
                                     for i in spec.redundant_limbs]},
        "loss_weights": {"keypoints": float(spec.keypoint_weight),
                         "person_mask": float(spec.person_mask_weight)},
    }


def _index(v, table, where: str) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, str)):
        raise ValueError(f"{where}: {v!r} is neither a point name nor an index")
    if isinstance(v, int):
        if not 0 <= v < len(table):
            raise ValueError(f"{where}: index {v} is outside 0..{len(table) - 1}")
        return v
    if v not in table:
        raise ValueError(f"{where}: unknown point {v!r}")
    return table.index(v)


def _pairs(items, table, where: str) -> tuple:
    if not isinstance(items, (list, tuple)):
        raise ValueError(f"{where} must be a list of [a, b] pairs")
    out = []
    for p in items:
        if not isinstance(p, (list, tuple)) or len(p) != 2:
            raise ValueError(f"{where}: {p!r} is not an [a, b] pair")
        out.append((_index(p[0], table, where), _index(p[1], table, where)))
    return tuple(out)


def from_file_dict(d, source: str = "keypoint spec"):
    """A KeypointSpec from a spec file's content; errors name ``source``."""
    from keras_pose.skeleton import KeypointSpec
    if not isinstance(d, dict):
        raise ValueError(f"{source}: a keypoint spec must be a JSON object")
    try:
        if "keypoints" not in d and "names" in d:
            return _from_legacy(d)
        if d.get("format", FORMAT) != FORMAT or d.get("version", VERSION) != VERSION:
            raise ValueError(f"format {d.get('format')!r} version {d.get('version')!r} is not "
                             f"{FORMAT!r} version {VERSION}")
        unknown = sorted(set(d) - _TOP_KEYS)
        if unknown:
            raise ValueError(f"unknown keys {unknown}")
        for key in ("keypoints", "sigmas"):
            if key not in d:
                raise ValueError(f"missing {key!r}")
        names = d["keypoints"]
        if not isinstance(names, list) or not all(isinstance(x, str) for x in names):
            raise ValueError("'keypoints' must be a list of names")
        syn = d.get("synthesized") or {}
        if not isinstance(syn, dict):
            raise ValueError("'synthesized' must map a name to [keypoint a, keypoint b]")
        synthesized = tuple((s,) + _pairs([ab], names, f"synthesized {s!r}")[0]
                            for s, ab in syn.items())
        bp = d.get("body_parts") or {}
        unknown = sorted(set(bp) - {"order", "limbs", "redundant"})
        if unknown:
            raise ValueError(f"unknown body_parts keys {unknown}")
        order = bp.get("order")
        table = list(order) if order else list(names) + list(syn)
        limbs = _pairs(bp["limbs"], table, "body_parts.limbs") if bp.get("limbs") else None
        redundant = None
        if "redundant" in bp:
            if limbs is None:
                raise ValueError("body_parts.redundant needs body_parts.limbs")
            where = {frozenset(e): i for i, e in enumerate(limbs)}
            redundant = []
            for e in _pairs(bp["redundant"], table, "body_parts.redundant"):
                if frozenset(e) not in where:
                    raise ValueError(f"body_parts.redundant: {table[e[0]]}-{table[e[1]]} "
                                     "is not in body_parts.limbs")
                redundant.append(where[frozenset(e)])
        lw = d.get("loss_weights") or {}
        unknown = sorted(set(lw) - {"keypoints", "person_mask"})
        if unknown:
            raise ValueError(f"unknown loss_weights keys {unknown}")
        return KeypointSpec(
            names=tuple(names), sigmas=tuple(float(s) for s in d["sigmas"]),
            flip_pairs=_pairs(d.get("flip_pairs", []), names, "flip_pairs"),
            skeleton=_pairs(d.get("skeleton", []), names, "skeleton"),
            synthesized=synthesized, internal_names=tuple(order) if order else None,
            limbs=limbs, redundant_limbs=None if redundant is None else tuple(redundant),
            keypoint_weight=float(lw.get("keypoints", 3.0)),
            person_mask_weight=float(lw.get("person_mask", 0.1)),
            name=str(d.get("name", "custom")))
    except (TypeError, ValueError) as e:
        msg = str(e).replace("invalid KeypointSpec: ", "")
        raise ValueError(f"{source}: {msg}") from None


def _from_legacy(d):
    """The dataclass field dict runs saved before spec files (COCO's neck only)."""
    from keras_pose.skeleton import KeypointSpec
    unknown = sorted(set(d) - _LEGACY_KEYS)
    if unknown:
        raise ValueError(f"unknown KeypointSpec fields {unknown}")
    names = tuple(d["names"])
    internal = tuple(d.get("internal_names", names))
    to_data = d.get("internal_to_coco", list(range(len(internal))))
    synthesized = []
    for n, c in zip(internal, to_data):
        if c < 0:
            if not {"left_shoulder", "right_shoulder"} <= set(names):
                raise ValueError(f"cannot tell how {n!r} is synthesised")
            synthesized.append((n, names.index("left_shoulder"), names.index("right_shoulder")))
        elif names[c] != n and n not in names:
            # legacy specs may name map points differently; keep the dataset name
            internal = tuple(names[c] if x == n else x for x in internal)
    return KeypointSpec(
        names=names, sigmas=tuple(d["sigmas"]), flip_pairs=tuple(d.get("flip_pairs", ())),
        skeleton=tuple(d.get("skeleton", ())), synthesized=tuple(synthesized),
        internal_names=internal,
        limbs=tuple(zip(d["limb_from"], d["limb_to"])) if "limb_from" in d else None,
        redundant_limbs=tuple(d["redundant_limbs"]) if "redundant_limbs" in d else None,
        keypoint_weight=float(d.get("keypoint_weight", 3.0)),
        person_mask_weight=float(d.get("person_mask_weight", 0.1)),
        name="coco" if names == _coco_names() else "custom")


def _coco_names():
    from keras_pose.skeleton import COCO_KEYPOINT_NAMES
    return COCO_KEYPOINT_NAMES


def load(path):
    """Read a spec file (JSON); one-line errors naming the file."""
    try:
        with open(path, encoding="utf-8") as f:
            d = json.load(f)
    except OSError as e:
        raise ValueError(f"{path}: cannot read the keypoint spec ({e.strerror})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None
    return from_file_dict(d, str(path))


def save(spec, path) -> str:
    """Write ``spec`` as a spec file; returns the path."""
    path = os.fspath(path)
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(to_file_dict(spec), f, indent=1)
        f.write("\n")
    os.replace(tmp, path)
    return path
