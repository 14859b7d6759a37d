"""Draw poses on an image: skeleton lines from the KeypointSpec, keypoints, ids, FPS.

Shapes: image (H, W, 3) uint8 RGB; Poses keypoints (P, K, 3) [x, y, score] in image pixels.
NumPy + OpenCV only (runtime path; no TensorFlow).
"""
from __future__ import annotations

import colorsys

import cv2
import numpy as np

from keras_pose.skeleton import COCO, KeypointSpec


def _colour(i: int) -> tuple:
    """A distinct RGB colour for index i (golden-ratio hue steps)."""
    r, g, b = colorsys.hsv_to_rgb((i * 0.618034) % 1.0, 0.85, 1.0)
    return int(r * 255), int(g * 255), int(b * 255)


def draw_poses(image, poses, spec: KeypointSpec = COCO, ids=None, fps=None,
               min_score: float = 0.0, thickness: int | None = None) -> np.ndarray:
    """A copy of ``image`` with every person's skeleton drawn.

    Args:
        image: (H, W, 3) uint8 RGB (a grayscale (H, W) image is expanded).
        poses: Poses with P persons, K = spec.num_keypoints.
        spec: the skeleton (``spec.skeleton``: pairs of COCO keypoint indices).
        ids: optional (P,) track ids; a person's colour and label follow its id.
        fps: optional frames per second, written in the top-left corner.
        min_score: keypoints with score <= this are not drawn.
    Returns:
        (H, W, 3) uint8 RGB.
    """
    img = np.asarray(image)
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=-1)
    if img.ndim != 3 or img.shape[-1] != 3:
        raise ValueError(f"draw_poses: image must be (H, W, 3), got shape {img.shape}")
    out = np.ascontiguousarray(img, dtype=np.uint8).copy()
    if len(poses) and poses.num_keypoints != spec.num_keypoints:
        raise ValueError(f"draw_poses: poses have {poses.num_keypoints} keypoints, "
                         f"spec has {spec.num_keypoints}")
    if ids is not None and len(ids) != len(poses):
        raise ValueError(f"draw_poses: {len(ids)} ids for {len(poses)} persons")
    t = thickness or max(1, round(max(out.shape[:2]) / 320))
    for p in range(len(poses)):
        kp = poses.keypoints[p]
        pid = int(ids[p]) if ids is not None else p
        colour = _colour(pid)
        ok = kp[:, 2] > min_score
        pts = np.round(kp[:, :2]).astype(np.int32)
        for a, b in spec.skeleton:
            if ok[a] and ok[b]:
                cv2.line(out, tuple(map(int, pts[a])), tuple(map(int, pts[b])), colour, t, cv2.LINE_AA)
        for k in np.flatnonzero(ok):
            cv2.circle(out, tuple(map(int, pts[k])), t + 1, (255, 255, 255), -1, cv2.LINE_AA)
            cv2.circle(out, tuple(map(int, pts[k])), t + 1, colour, 1, cv2.LINE_AA)
        if ids is not None and ok.any():
            top = pts[ok][np.argmin(pts[ok][:, 1])]
            _label(out, f"#{pid}", (int(top[0]), max(12, int(top[1]) - 6)), colour)
    if fps is not None:
        _label(out, f"{fps:.1f} FPS", (6, 18), (255, 255, 255))
    return out


def _label(img, text, org, colour):
    # A dark outline keeps the text readable on any background.
    cv2.putText(img, text, org, cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(img, text, org, cv2.FONT_HERSHEY_SIMPLEX, 0.5, colour, 1, cv2.LINE_AA)
