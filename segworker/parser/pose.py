"""Body landmarks as network input: heatmap planes of shoulders, hips, knees, ankles.

BlazePose (:meth:`segworker.parser.person.PersonFinder.landmarks`) gives 33
landmarks per person. The joints where one garment ends and the next begins
become :data:`POSE_PLANES` extra input planes: one Gaussian blob per joint,
left and right together in one plane (so a mirrored crop is still a valid
input: the planes carry no side), its height the landmark's visibility, its
width a share of the person's torso length (so it scales with the person,
not with the photo).

Landmarks are kept as a ``33 x 3`` float32 array in *photo* pixels: ``x``,
``y`` and visibility (0-1). A landmark outside the photo counts as not seen
(BlazePose guesses where the legs of a half-body photo would be; training
cuts photos the same way, and so sees the same rule).

The planes are drawn straight in the crop: the crop matrix is a similarity
(uniform scale, rotation, mirror), which maps a round Gaussian in the photo
onto a round Gaussian in the crop, so drawing each blob at its landmark's
crop position with the scaled width is the photo-space heatmap cropped with
that same matrix, without rendering planes at the photo's full size.
"""

from __future__ import annotations

import numpy as np

from segworker.parser import crop

#: The planes, in input order, and BlazePose's landmark ids (left, right) behind each.
POSE_JOINTS: dict[str, tuple[int, int]] = {
    "shoulders": (11, 12),
    "hips": (23, 24),
    "knees": (25, 26),
    "ankles": (27, 28),
}

#: Names of the pose planes, in input order.
POSE_PLANES = tuple(POSE_JOINTS)

#: Landmarks BlazePose gives per person.
LANDMARKS = 33

#: Blob standard deviation, as a share of the torso length (shoulders' midpoint
#: to hips' midpoint; about a third of a standing person's height).
SIGMA_SHARE = 0.15

#: Smallest blob standard deviation in the crop (input pixels).
MIN_SIGMA = 2.0


def torso_length(landmarks: np.ndarray) -> float:
    """Distance (photo pixels) from the shoulders' midpoint to the hips'.

    Uses BlazePose's positions whatever their visibility: it places hidden
    or out-of-photo hips where the body implies them, which is a fair scale."""
    shoulders = landmarks[list(POSE_JOINTS["shoulders"]), :2].mean(axis=0)
    hips = landmarks[list(POSE_JOINTS["hips"]), :2].mean(axis=0)
    return float(np.hypot(*(shoulders - hips)))


def pose_planes(landmarks: np.ndarray | None, matrix: np.ndarray,
                photo_shape: tuple[int, ...],
                size: tuple[int, int] = (crop.INPUT_H, crop.INPUT_W)) -> np.ndarray:
    """``len(POSE_PLANES) x height x width`` float32 heatmaps (0-1) in the
    crop ``matrix`` selects (``size``: the crop's height and width, the
    network's input unless :func:`crop.shrunk`), for ``landmarks`` of a photo
    of ``photo_shape`` (height, width); all zero when ``landmarks`` is None
    (no pose found)."""
    if landmarks is None:
        return np.zeros((len(POSE_PLANES), *size), np.float32)
    scale = float(np.sqrt(abs(np.linalg.det(matrix[:, :2]))))
    return _draw(landmarks, photo_shape, matrix, SIGMA_SHARE * torso_length(landmarks) * scale,
                 size)


def photo_planes(landmarks: np.ndarray, photo_shape: tuple[int, ...]) -> np.ndarray:
    """The same heatmaps drawn at the photo's own size (``P x H x W``): what
    :func:`pose_planes` equals once cropped (for tests, and for looking at)."""
    identity = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    return _draw(landmarks, photo_shape, identity, SIGMA_SHARE * torso_length(landmarks),
                 (photo_shape[0], photo_shape[1]))


def _draw(landmarks: np.ndarray, photo_shape: tuple[int, ...], matrix: np.ndarray,
          sigma: float, out_shape: tuple[int, int]) -> np.ndarray:
    height, width = photo_shape[:2]
    sigma = max(MIN_SIGMA, sigma)
    planes = np.zeros((len(POSE_PLANES), *out_shape), np.float32)
    xs = np.arange(out_shape[1], dtype=np.float32)
    ys = np.arange(out_shape[0], dtype=np.float32)
    for plane, ids in zip(planes, POSE_JOINTS.values()):
        for i in ids:
            x, y, seen = (float(v) for v in landmarks[i])
            if not seen > 0 or not (0 <= x < width and 0 <= y < height):
                continue
            cx, cy = matrix @ np.array([x, y, 1.0])
            gx = np.exp(-0.5 * ((xs - cx) / sigma) ** 2)
            gy = np.exp(-0.5 * ((ys - cy) / sigma) ** 2)
            np.maximum(plane, min(1.0, seen) * np.outer(gy, gx), out=plane)
    return planes
