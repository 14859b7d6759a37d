"""Kinematics of the synthetic figures: a 3-D stick body over the 17 COCO keypoints.

A figure is posed in its own body frame (x = the figure's left, y = down,
z = forward; the unit is the standing height, pelvis centre at the origin),
then turned (yaw about the vertical) and rolled in the image plane, and
projected orthographically: image x right, y down, z towards the camera (larger
z is nearer). Facing the camera (yaw 0), the figure's left side therefore lands
on the image's right, as in a photograph.

Joint angles are sampled per posture (standing, walking, running, arms raised,
arms out, waving, crossed legs, bending, sitting, squatting, kneeling, lying)
inside human ranges of motion: shoulder elevation 0-180 deg, elbow 0-150 deg,
hip flexion -25..125 deg, adduction to -25 deg (crossed legs), knee 0-150 deg,
trunk flexion up to ~100 deg, head turn within +-70 deg of the trunk.

Face points (nose, eyes, ears) get an outward normal; one that faces away from
the camera (profile: the far eye and ear; back view: nose and eyes) is marked
self-hidden and is neither drawn nor labelled, as COCO annotators leave a face
point they cannot see unlabelled.

Nothing here draws; ``figure_units`` turns a posed figure into the 2-D
primitives (capsules, polygons, ellipses, discs) that ``_render`` rasterises.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np

from keras_pose.skeleton import COCO_KEYPOINT_NAMES

K = len(COCO_KEYPOINT_NAMES)
KP = {n: i for i, n in enumerate(COCO_KEYPOINT_NAMES)}

POSTURES = ("stand", "walk", "run", "arms_up", "arms_out", "wave", "cross_legs",
            "bend", "sit", "squat", "kneel", "lie")

# Body parts, in a fixed order per figure; index = part kind. Colour roles and
# keypoint ownership are keyed on these names.
PART_NAMES = (
    "torso", "neck", "head", "nose", "left_eye", "right_eye", "left_ear", "right_ear",
    "left_upper_arm", "right_upper_arm", "left_forearm", "right_forearm",
    "left_hand", "right_hand", "left_thigh", "right_thigh", "left_shin", "right_shin",
    "left_foot", "right_foot", "left_elbow_mark", "right_elbow_mark",
    "left_wrist_mark", "right_wrist_mark", "left_knee_mark", "right_knee_mark",
    "left_ankle_mark", "right_ankle_mark",
)
PART = {n: i for i, n in enumerate(PART_NAMES)}


def _owners():
    own = {"nose": ("head", "nose"), "left_eye": ("head", "left_eye"),
           "right_eye": ("head", "right_eye"), "left_ear": ("head", "left_ear"),
           "right_ear": ("head", "right_ear")}
    for s in ("left", "right"):
        own[f"{s}_shoulder"] = ("torso", f"{s}_upper_arm")
        own[f"{s}_elbow"] = (f"{s}_upper_arm", f"{s}_forearm", f"{s}_elbow_mark")
        own[f"{s}_wrist"] = (f"{s}_forearm", f"{s}_hand", f"{s}_wrist_mark")
        own[f"{s}_hip"] = ("torso", f"{s}_thigh")
        own[f"{s}_knee"] = (f"{s}_thigh", f"{s}_shin", f"{s}_knee_mark")
        own[f"{s}_ankle"] = (f"{s}_shin", f"{s}_foot", f"{s}_ankle_mark")
    return tuple(tuple(PART[p] for p in own[n]) for n in COCO_KEYPOINT_NAMES)


# KEYPOINT_OWNERS[k]: the part kinds whose pixels count as keypoint k itself
# (a pixel of any other part, or of another figure, on top of it hides it).
KEYPOINT_OWNERS = _owners()


def _rx(a):
    c, s = np.cos(a), np.sin(a)
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])


def _ry(a):
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


def _rz(a):
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


def _unit(v, fallback):
    n = math.sqrt(float(v @ v))
    return v / n if n > 1e-6 else np.asarray(fallback, float)


def _cross(a, b):
    # np.cross is slow on single 3-vectors (axis handling), and this runs per limb.
    return np.array([a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2],
                     a[0] * b[1] - a[1] * b[0]])


@dataclasses.dataclass
class Angles:
    """Joint angles in degrees (one entry per side: [left, right])."""

    trunk_pitch: float = 0.0        # forward bend of the trunk (+ = forward)
    trunk_lean: float = 0.0         # sideways lean
    trunk_twist: float = 0.0        # shoulders turned against the hips
    head_yaw: float = 0.0
    head_pitch: float = 0.0
    arm_elev: tuple = (10.0, 10.0)  # 0 = hanging, 90 = horizontal, 180 = overhead
    arm_azim: tuple = (20.0, 20.0)  # 0 = out sideways, 90 = forward, >90 = across, <0 = back
    elbow: tuple = (10.0, 10.0)     # flexion
    elbow_roll: tuple = (0.0, 0.0)  # plane of the elbow bend about the upper arm
    hip_flex: tuple = (0.0, 0.0)    # + = thigh forward
    hip_abd: tuple = (4.0, 4.0)     # + = out, - = crossing the other leg
    knee: tuple = (5.0, 5.0)
    roll: float = 0.0               # whole-body roll in the image plane (lying: ~90)
    yaw: float = 0.0                # whole-body turn; 0 faces the camera, 180 shows the back


def _u(rng, lo, hi):
    return float(rng.uniform(lo, hi))


def _pair(rng, lo, hi):
    return (_u(rng, lo, hi), _u(rng, lo, hi))


def sample_yaw(rng, back_prob: float, profile_prob: float = 0.3) -> float:
    """Whole-body yaw: ``back_prob`` back views, ``profile_prob`` side views, else frontal."""
    r = rng.random()
    sign = 1.0 if rng.random() < 0.5 else -1.0
    if r < back_prob:
        return sign * _u(rng, 115, 180)
    if r < back_prob + profile_prob:
        return sign * _u(rng, 45, 115)
    return _u(rng, -45, 45)


def sample_angles(rng, posture: str, back_prob: float = 0.1, profile_prob: float = 0.3) -> Angles:
    """Joint angles for ``posture`` (one of POSTURES), within human ranges of motion."""
    a = Angles(
        trunk_pitch=_u(rng, -8, 12), trunk_lean=_u(rng, -8, 8), trunk_twist=_u(rng, -15, 15),
        head_yaw=float(np.clip(rng.normal(0, 25), -70, 70)), head_pitch=_u(rng, -20, 20),
        arm_elev=_pair(rng, 5, 35), arm_azim=_pair(rng, -10, 80), elbow=_pair(rng, 0, 50),
        elbow_roll=_pair(rng, -40, 60), hip_flex=_pair(rng, -5, 10), hip_abd=_pair(rng, 0, 10),
        knee=_pair(rng, 0, 15), roll=float(np.clip(rng.normal(0, 6), -15, 15)),
        yaw=sample_yaw(rng, back_prob, profile_prob))
    sides = [0, 1] if rng.random() < 0.5 else [1, 0]   # which side leads in asymmetric poses
    lead, other = sides

    def setp(name, i, v):
        t = list(getattr(a, name))
        t[i] = v
        setattr(a, name, tuple(t))

    if posture == "walk" or posture == "run":
        big = posture == "run"
        swing = _u(rng, 35, 70) if big else _u(rng, 15, 35)
        setp("hip_flex", lead, swing)
        setp("hip_flex", other, -_u(rng, 10, 25))
        setp("knee", lead, _u(rng, 30, 80) if big else _u(rng, 0, 20))
        setp("knee", other, _u(rng, 60, 110) if big else _u(rng, 10, 40))
        # Arms swing against the legs.
        setp("arm_azim", other, _u(rng, 70, 100))
        setp("arm_azim", lead, -_u(rng, 70, 100))
        setp("arm_elev", other, _u(rng, 20, 60) if big else _u(rng, 10, 35))
        setp("arm_elev", lead, _u(rng, 15, 45) if big else _u(rng, 10, 30))
        a.elbow = _pair(rng, 70, 110) if big else _pair(rng, 5, 40)
        a.trunk_pitch = _u(rng, 5, 20) if big else a.trunk_pitch
    elif posture == "arms_up":
        both = rng.random() < 0.6
        setp("arm_elev", lead, _u(rng, 110, 180))
        setp("arm_azim", lead, _u(rng, -20, 100))
        setp("elbow", lead, _u(rng, 0, 60))
        if both:
            setp("arm_elev", other, _u(rng, 110, 180))
            setp("arm_azim", other, _u(rng, -20, 100))
            setp("elbow", other, _u(rng, 0, 60))
    elif posture == "arms_out":
        a.arm_elev = _pair(rng, 65, 115)
        a.arm_azim = _pair(rng, -20, 45)
        a.elbow = _pair(rng, 0, 40)
    elif posture == "wave":
        setp("arm_elev", lead, _u(rng, 70, 130))
        setp("arm_azim", lead, _u(rng, -10, 50))
        setp("elbow", lead, _u(rng, 60, 130))
        setp("elbow_roll", lead, _u(rng, -100, -60))   # forearm turned up
    elif posture == "cross_legs":
        setp("hip_abd", lead, -_u(rng, 12, 25))
        setp("hip_flex", lead, _u(rng, 0, 15))
        setp("hip_abd", other, _u(rng, -5, 5))
        if rng.random() < 0.5:   # arms crossed on the chest
            a.arm_elev = _pair(rng, 35, 70)
            a.arm_azim = _pair(rng, 95, 130)
            a.elbow = _pair(rng, 100, 145)
            a.elbow_roll = _pair(rng, -20, 20)
    elif posture == "bend":
        p = _u(rng, 40, 100)
        a.trunk_pitch = p
        a.hip_flex = _pair(rng, -5, 10)
        a.knee = _pair(rng, 0, 30)
        a.arm_elev = (p + _u(rng, -20, 20), p + _u(rng, -20, 20))   # arms hang towards the ground
        a.arm_azim = _pair(rng, 70, 100)
        a.elbow = _pair(rng, 0, 30)
        a.head_pitch = _u(rng, -40, 0)
    elif posture == "sit":
        a.hip_flex = _pair(rng, 75, 100)
        a.knee = _pair(rng, 70, 110)
        a.hip_abd = _pair(rng, -3, 15)
        a.trunk_pitch = _u(rng, -15, 15)
        a.arm_elev = _pair(rng, 10, 50)
        a.arm_azim = _pair(rng, 50, 100)
        a.elbow = _pair(rng, 20, 90)
    elif posture == "squat":
        a.hip_flex = _pair(rng, 95, 125)
        a.knee = _pair(rng, 110, 150)
        a.hip_abd = _pair(rng, 5, 25)
        a.trunk_pitch = _u(rng, 15, 45)
        a.arm_elev = _pair(rng, 30, 90)
        a.arm_azim = _pair(rng, 60, 100)
        a.elbow = _pair(rng, 0, 80)
    elif posture == "kneel":
        setp("hip_flex", lead, _u(rng, 70, 100))
        setp("knee", lead, _u(rng, 70, 100))
        setp("hip_flex", other, _u(rng, -10, 10))
        setp("knee", other, _u(rng, 80, 110))
    elif posture == "lie":
        # A relaxed body rolled onto the ground plane, seen from above or side.
        a.arm_elev = _pair(rng, 0, 150)
        a.arm_azim = _pair(rng, -20, 60)
        a.hip_abd = _pair(rng, -5, 20)
        a.knee = _pair(rng, 0, 60)
        a.hip_flex = _pair(rng, 0, 40)
        a.roll = float((1 if rng.random() < 0.5 else -1) * _u(rng, 65, 115))
        a.yaw = _u(rng, -40, 40) if rng.random() < 0.8 else a.yaw
    return a


@dataclasses.dataclass
class Body:
    """Segment lengths and widths as fractions of the standing height."""

    upper_arm: float = 0.17
    forearm: float = 0.15
    thigh: float = 0.245
    shin: float = 0.245
    trunk: float = 0.29
    shoulder_width: float = 0.23
    hip_width: float = 0.17
    build: float = 1.0              # multiplies every width


def sample_body(rng) -> Body:
    j = lambda v: float(v * rng.uniform(0.92, 1.08))  # noqa: E731
    return Body(upper_arm=j(0.17), forearm=j(0.15), thigh=j(0.245), shin=j(0.245),
                trunk=j(0.29), shoulder_width=j(0.23), hip_width=j(0.17),
                build=float(rng.uniform(0.8, 1.25)))


def pose_points(body: Body, a: Angles):
    """3-D points of a posed figure in the world frame (unit = standing height).

    Returns (points, extra, normals): points (17, 3) COCO keypoints; extra, a dict of
    auxiliary (3,) points (head centre, neck base, hand and toe tips, trunk frame);
    normals (17, 3) outward normals of the face points (zero elsewhere).
    """
    d = np.deg2rad
    world = _rz(d(a.roll)) @ _ry(d(a.yaw))
    # Trunk: rx(-pitch) tilts "up" (0,-1,0) towards +z (forward) for a positive pitch.
    trunk = _rx(-d(a.trunk_pitch)) @ _rz(d(a.trunk_lean)) @ _ry(d(a.trunk_twist))
    pelvis = np.zeros(3)
    sh_c = pelvis + trunk @ np.array([0.0, -body.trunk, 0.0])
    lateral = trunk[:, 0]
    p = np.zeros((K, 3))
    n = np.zeros((K, 3))
    for side, s in (("left", 1.0), ("right", -1.0)):
        i = 0 if side == "left" else 1
        sh = sh_c + s * lateral * body.shoulder_width / 2
        hip = pelvis + s * np.array([1.0, 0, 0]) * body.hip_width / 2
        # Upper arm by elevation (from hanging) and azimuth (from straight out sideways).
        el, az = d(a.arm_elev[i]), d(a.arm_azim[i])
        ua = trunk @ np.array([s * np.sin(el) * np.cos(az), np.cos(el), np.sin(el) * np.sin(az)])
        # Elbow bend: towards the front of the arm, turned about the upper arm by elbow_roll.
        fwd = trunk @ np.array([0.0, 0.0, 1.0])
        ref = fwd if abs(ua @ fwd) < 0.95 else trunk @ np.array([0.0, -1.0, 0.0])
        b = _unit(ref - (ref @ ua) * ua, [0, 0, 1])
        c = _cross(ua, b) * s
        roll = d(a.elbow_roll[i])
        b = np.cos(roll) * b + np.sin(roll) * c
        eb = d(a.elbow[i])
        fa = np.cos(eb) * ua + np.sin(eb) * b
        elbow = sh + ua * body.upper_arm
        wrist = elbow + fa * body.forearm
        # Thigh: abduction about z then flexion about x; the knee folds it backwards.
        fl, ab = d(a.hip_flex[i]), d(a.hip_abd[i])
        th = np.array([s * np.sin(ab), np.cos(ab) * np.cos(fl), np.cos(ab) * np.sin(fl)])
        back = np.array([0.0, np.sin(fl), -np.cos(fl)])
        back = _unit(back - (back @ th) * th, [0, 0, -1])
        kn = d(a.knee[i])
        sn = np.cos(kn) * th + np.sin(kn) * back
        knee = hip + th * body.thigh
        ankle = knee + sn * body.shin
        toe_dir = _unit(np.array([0.0, 0.0, 1.0]) - sn[2] * sn, [0, 0, 1])
        for name, q in ((f"{side}_shoulder", sh), (f"{side}_elbow", elbow),
                        (f"{side}_wrist", wrist), (f"{side}_hip", hip),
                        (f"{side}_knee", knee), (f"{side}_ankle", ankle)):
            p[KP[name]] = q
        extra_side = {f"{side}_hand": wrist + fa * 0.035,
                      f"{side}_toe": ankle + toe_dir * 0.075 + sn * 0.02}
        if side == "left":
            extra = dict(extra_side)
        else:
            extra.update(extra_side)
    head_r = trunk @ _ry(d(a.head_yaw)) @ _rx(d(a.head_pitch))
    neck = sh_c + trunk @ np.array([0.0, -0.035, 0.0])
    head_c = neck + head_r @ np.array([0.0, -0.075, 0.005])
    local = {"nose": ((0, 0.012, 0.058), (0, 0, 1)),
             "left_eye": ((0.027, -0.008, 0.045), (0.45, 0, 0.9)),
             "right_eye": ((-0.027, -0.008, 0.045), (-0.45, 0, 0.9)),
             "left_ear": ((0.057, 0.0, -0.005), (1, 0, -0.1)),
             "right_ear": ((-0.057, 0.0, -0.005), (-1, 0, -0.1))}
    for name, (off, nrm) in local.items():
        p[KP[name]] = head_c + head_r @ np.asarray(off, float)
        n[KP[name]] = head_r @ _unit(np.asarray(nrm, float), [0, 0, 1])
    extra.update(head_c=head_c, neck=neck, head_up=head_r @ np.array([0.0, -1.0, 0.0]),
                 trunk_fwd=trunk @ np.array([0.0, 0.0, 1.0]), trunk_lat=lateral)
    pts = p @ world.T
    extra = {k: world @ v for k, v in extra.items()}
    return pts, extra, n @ world.T


# Self-visibility thresholds on the camera-facing component of a face normal:
# the far ear goes at ~25-30 deg of turn, the far eye at ~65 deg, the nose past 95 deg.
_FACE_THRESH = {"nose": -0.12, "left_eye": -0.1, "right_eye": -0.1,
                "left_ear": -0.35, "right_ear": -0.35}


def face_visible(normals) -> np.ndarray:
    """(17,) bool: False for face points turned away from the camera."""
    vis = np.ones(K, bool)
    for name, t in _FACE_THRESH.items():
        vis[KP[name]] = normals[KP[name], 2] > t
    return vis


@dataclasses.dataclass
class Unit:
    """Primitives drawn together, in order, at one depth.

    prims: list of (part kind, shape, params) with shape in {"capsule", "poly",
    "ellipse", "disc"} and params in pixels.
    """

    depth: float
    prims: list


def figure_units(pts, extra, face_vis, body: Body, scale: float, offset) -> tuple:
    """2-D drawing units of a figure placed at ``scale`` px per height unit.

    pts (17, 3) world points; returns (xy (17, 2) keypoint pixels, list of Unit
    sorted far to near). Keypoint (x, y) follows the drawing convention: the
    pixel with index (i, j) has its centre at (i, j).
    """
    off = np.asarray(offset, float)
    P = lambda q: q[:2] * scale + off  # noqa: E731
    w = lambda f: max(f * body.build * scale, 1.2)  # noqa: E731  (never thinner than a pixel)
    xy = pts[:, :2] * scale + off
    z = pts[:, 2]
    units = []
    # Trunk: hull of a box around the shoulder and hip lines (gives thickness in profile).
    fwd, lat = extra["trunk_fwd"], extra["trunk_lat"]
    corners = []
    for name in ("left_shoulder", "right_shoulder", "left_hip", "right_hip"):
        s = 1.0 if name.startswith("left") else -1.0
        out = 0.03 if "shoulder" in name else 0.025
        for dz in (-0.06, 0.06):
            corners.append(P(pts[KP[name]] + s * lat * out * body.build + fwd * dz * body.build))
    corners.append(P(extra["neck"]))
    z = [float(v) for v in z]
    trunk_depth = (z[5] + z[6] + z[11] + z[12]) / 4
    units.append(Unit(trunk_depth, [(PART["torso"], "poly", np.array(corners))]))
    # Head unit: neck, skull, then the face points that face the camera.
    hc = P(extra["head_c"])
    up = extra["head_up"][:2]
    ang = float(np.degrees(np.arctan2(up[1], up[0]))) + 90.0
    prims = [(PART["neck"], "capsule", (P(extra["neck"]), hc, w(0.05), w(0.05))),
             (PART["head"], "ellipse", (hc, (w(0.05), w(0.064)), ang))]
    for name, kind, r in (("left_ear", "left_ear", 0.016), ("right_ear", "right_ear", 0.016),
                          ("left_eye", "left_eye", 0.011), ("right_eye", "right_eye", 0.011),
                          ("nose", "nose", 0.013)):
        if face_vis[KP[name]]:
            prims.append((PART[kind], "disc", (xy[KP[name]], w(r) * 0.9)))
    units.append(Unit(float(extra["head_c"][2]) + 0.03, prims))
    for side in ("left", "right"):
        j = lambda n: KP[f"{side}_{n}"]  # noqa: E731
        pk = lambda n: PART[f"{side}_{n}"]  # noqa: E731
        upper = Unit((z[j("shoulder")] + z[j("elbow")]) / 2 + 0.02,
                     [(pk("upper_arm"), "capsule",
                       (xy[j("shoulder")], xy[j("elbow")], w(0.05), w(0.04)))])
        lower = Unit((z[j("elbow")] + z[j("wrist")]) / 2 + 0.02,
                     [(pk("forearm"), "capsule",
                       (xy[j("elbow")], xy[j("wrist")], w(0.04), w(0.031))),
                      (pk("hand"), "disc", (P(extra[f"{side}_hand"]), w(0.024))),
                      (pk("wrist_mark"), "disc", (xy[j("wrist")], w(0.014)))])
        elbow = Unit(max(upper.depth, lower.depth) + 1e-4,
                     [(pk("elbow_mark"), "disc", (xy[j("elbow")], w(0.017)))])
        thigh = Unit((z[j("hip")] + z[j("knee")]) / 2 + 0.01,
                     [(pk("thigh"), "capsule", (xy[j("hip")], xy[j("knee")], w(0.08), w(0.058)))])
        shin = Unit((z[j("knee")] + z[j("ankle")]) / 2 + 0.01,
                    [(pk("shin"), "capsule", (xy[j("knee")], xy[j("ankle")], w(0.056), w(0.04))),
                     (pk("foot"), "capsule",
                      (xy[j("ankle")], P(extra[f"{side}_toe"]), w(0.036), w(0.026))),
                     (pk("ankle_mark"), "disc", (xy[j("ankle")], w(0.016)))])
        knee = Unit(max(thigh.depth, shin.depth) + 1e-4,
                    [(pk("knee_mark"), "disc", (xy[j("knee")], w(0.02)))])
        units += [upper, lower, elbow, thigh, shin, knee]
    units.sort(key=lambda u: u.depth)
    return xy, units
