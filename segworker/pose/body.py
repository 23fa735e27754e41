"""Body geometry from BlazePose landmarks: which body part each pixel is nearest.

Pure numpy. The body is a stick figure of line segments (upper and lower
arms, hands, thighs, calves, feet, the torso's centre line and outline) plus a
disc for the head; every pixel takes the part of its nearest segment. A second
coordinate, ``t``, runs along the torso's axis: 0 at the shoulder line, 1 at
the hip line, more than 1 down the legs. The waist line sits at
``t = 1 - WAIST_RISE``; torso pixels above it are upper body, below it lower.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# BlazePose landmark indices (the model's fixed output order).
NOSE, L_EYE, R_EYE, L_EAR, R_EAR, MOUTH_L, MOUTH_R = 0, 2, 5, 7, 8, 9, 10
L_SHOULDER, R_SHOULDER, L_ELBOW, R_ELBOW, L_WRIST, R_WRIST = 11, 12, 13, 14, 15, 16
L_PINKY, R_PINKY, L_INDEX, R_INDEX = 17, 18, 19, 20
L_HIP, R_HIP, L_KNEE, R_KNEE, L_ANKLE, R_ANKLE = 23, 24, 25, 26, 27, 28
L_HEEL, R_HEEL, L_TOE, R_TOE = 29, 30, 31, 32

#: Body-part codes in :attr:`Regions.part`.
HEAD, ARM, TORSO, THIGH, CALF, FOOT = 0, 1, 2, 3, 4, 5

#: Fingertip landmarks: the wrist-to-finger segments are the hands.
HANDS = (L_INDEX, R_INDEX)

#: Landmark pairs whose segments make each limb part.
LIMBS: dict[int, tuple[tuple[int, int], ...]] = {
    ARM: ((L_SHOULDER, L_ELBOW), (R_SHOULDER, R_ELBOW), (L_ELBOW, L_WRIST),
          (R_ELBOW, R_WRIST), (L_WRIST, L_INDEX), (R_WRIST, R_INDEX)),
    THIGH: ((L_HIP, L_KNEE), (R_HIP, R_KNEE)),
    CALF: ((L_KNEE, L_ANKLE), (R_KNEE, R_ANKLE)),
    FOOT: ((L_ANKLE, L_TOE), (R_ANKLE, R_TOE), (L_HEEL, L_TOE), (R_HEEL, R_TOE)),
}

#: Height of the waist line above the hip landmarks, as a share of the torso
#: (shoulder line to hip line). BlazePose's hips are the hip joints, which sit
#: below where trousers and skirts start.
WAIST_RISE = 0.2

#: The head disc's radius beyond the ear-to-ear distance's centre, as a share
#: of that distance (negative: the disc is smaller, so the neck and collar are
#: decided by the torso and arm segments).
HEAD_RADIUS = -0.3

#: Smallest body breadth used for distances, as a share of the torso length
#: (frontal shoulders are about 0.6-0.7 of it).
MIN_BREADTH = 0.6


@dataclass(frozen=True)
class Body:
    """Landmark positions (pixels) with the lengths the regions scale by."""

    points: np.ndarray  #: 33 x 2 float32, x and y in pixels

    @property
    def shoulder_mid(self) -> np.ndarray:
        return (self.points[L_SHOULDER] + self.points[R_SHOULDER]) / 2

    @property
    def hip_mid(self) -> np.ndarray:
        return (self.points[L_HIP] + self.points[R_HIP]) / 2

    @property
    def head_centre(self) -> np.ndarray:
        return (self.points[L_EAR] + self.points[R_EAR]) / 2

    @property
    def torso_length(self) -> float:
        """Shoulder line to hip line, at least one pixel."""
        return max(float(np.linalg.norm(self.hip_mid - self.shoulder_mid)), 1.0)

    @property
    def shoulder_width(self) -> float:
        return max(float(np.linalg.norm(self.points[L_SHOULDER] - self.points[R_SHOULDER])), 1.0)

    @property
    def breadth(self) -> float:
        """Shoulder width, but at least :data:`MIN_BREADTH` of the torso
        length: a body turned sideways shows narrow shoulders, yet its
        clothes reach as far from the stick figure as a frontal body's."""
        return max(self.shoulder_width, MIN_BREADTH * self.torso_length)

    @property
    def hip_width(self) -> float:
        return max(float(np.linalg.norm(self.points[L_HIP] - self.points[R_HIP])), 1.0)

    @property
    def eye_distance(self) -> float:
        return max(float(np.linalg.norm(self.points[L_EYE] - self.points[R_EYE])), 1.0)

    def scaled(self, factor: float) -> Body:
        """The same body in an image resized by ``factor``."""
        return Body((self.points * factor).astype(np.float32))


@dataclass
class Regions:
    """Per-pixel geometry of one body in an H x W image."""

    part: np.ndarray    #: H x W uint8 part code (HEAD, ARM, ...)
    t: np.ndarray       #: H x W float32 position along the torso axis
    #: H x W float32 distance to the nearest sleeve (arm without the hand),
    #: torso or leg segment (px)
    reach: np.ndarray
    grid: tuple[np.ndarray, np.ndarray]  #: (X, Y) float32 pixel coordinates

    @property
    def below_waist(self) -> np.ndarray:
        return self.t > 1.0 - WAIST_RISE

    @property
    def geometric_upper(self) -> np.ndarray:
        """Arms, and torso above the waist line."""
        return (self.part == ARM) | ((self.part == TORSO) & ~self.below_waist)

    @property
    def geometric_lower(self) -> np.ndarray:
        """Thighs, calves, and torso below the waist line."""
        return (self.part == THIGH) | (self.part == CALF) | ((self.part == TORSO) & self.below_waist)


def segment_distance(grid: tuple[np.ndarray, np.ndarray], a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Distance from every pixel to the line segment ``a``-``b`` (pixels)."""
    xs, ys = grid
    ab = b - a
    length2 = max(float(ab @ ab), 1e-6)
    t = np.clip(((xs - a[0]) * ab[0] + (ys - a[1]) * ab[1]) / length2, 0.0, 1.0)
    return np.hypot(xs - (a[0] + t * ab[0]), ys - (a[1] + t * ab[1]))


def pixel_grid(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """(X, Y) float32 coordinate arrays of an H x W image."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    return xs, ys


def body_regions(body: Body, height: int, width: int) -> Regions:
    """Assign every pixel of an H x W image to its nearest body part."""
    grid = pixel_grid(height, width)
    p = body.points
    distances = np.empty((6, height, width), np.float32)
    head = body.head_centre
    ear_gap = float(np.linalg.norm(p[L_EAR] - p[R_EAR]))
    distances[HEAD] = np.hypot(grid[0] - head[0], grid[1] - head[1]) + HEAD_RADIUS * ear_gap
    torso_lines = ((body.shoulder_mid, body.hip_mid), (p[L_SHOULDER], p[L_HIP]),
                   (p[R_SHOULDER], p[R_HIP]), (p[L_SHOULDER], p[R_SHOULDER]), (p[L_HIP], p[R_HIP]))
    distances[TORSO] = _nearest(grid, torso_lines)
    for part, pairs in LIMBS.items():
        if part != ARM:
            distances[part] = _nearest(grid, tuple((p[i], p[j]) for i, j in pairs))
    # Garments end at the wrist: what lies around a hand (a bag, a phone) is
    # measured from the sleeve, not from the hand that holds it.
    sleeves = _nearest(grid, tuple((p[i], p[j]) for i, j in LIMBS[ARM] if j not in HANDS))
    hands = _nearest(grid, tuple((p[i], p[j]) for i, j in LIMBS[ARM] if j in HANDS))
    distances[ARM] = np.minimum(sleeves, hands)
    reach = np.minimum(sleeves, distances[[TORSO, THIGH, CALF]].min(axis=0))
    return Regions(np.argmin(distances, axis=0).astype(np.uint8), torso_axis(body, grid), reach, grid)


def hand_distance(body: Body, grid: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """Distance (pixels) from every pixel to the nearest hand's centre (the
    mean of its wrist, index and pinky landmarks)."""
    p = body.points
    left = (p[L_WRIST] + p[L_INDEX] + p[L_PINKY]) / 3
    right = (p[R_WRIST] + p[R_INDEX] + p[R_PINKY]) / 3
    return np.minimum(np.hypot(grid[0] - left[0], grid[1] - left[1]),
                      np.hypot(grid[0] - right[0], grid[1] - right[1]))


def torso_axis(body: Body, grid: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """Position of each pixel along the shoulder-to-hip axis (0 shoulders, 1 hips)."""
    axis = body.hip_mid - body.shoulder_mid
    down = axis / body.torso_length
    origin = body.shoulder_mid
    return ((grid[0] - origin[0]) * down[0] + (grid[1] - origin[1]) * down[1]) / body.torso_length


def _nearest(grid: tuple[np.ndarray, np.ndarray],
             lines: tuple[tuple[np.ndarray, np.ndarray], ...]) -> np.ndarray:
    out = segment_distance(grid, *lines[0])
    for a, b in lines[1:]:
        np.minimum(out, segment_distance(grid, a, b), out=out)
    return out
