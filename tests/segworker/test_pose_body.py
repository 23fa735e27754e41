"""Body geometry on synthetic BlazePose landmarks (no MediaPipe needed)."""

from __future__ import annotations

import numpy as np
import pytest

from segworker.pose import body as B

#: Synthetic image size of the standing figure (pixels).
WIDTH, HEIGHT = 200, 400


def standing_landmarks() -> np.ndarray:
    """33 x 3 landmarks (x, y, visibility) of a figure facing the camera in a
    200 x 400 image: shoulders at y=80, hips at y=200 (torso 120 px), ankles
    at y=370. The person's left is on the image's right, as BlazePose reports."""
    p = np.zeros((33, 3), np.float32)
    p[:, 2] = 1.0
    points = {
        B.NOSE: (100, 45), 1: (104, 38), B.L_EYE: (108, 38), 3: (112, 38),
        4: (96, 38), B.R_EYE: (92, 38), 6: (88, 38), B.L_EAR: (116, 40), B.R_EAR: (84, 40),
        B.MOUTH_L: (105, 55), B.MOUTH_R: (95, 55),
        B.L_SHOULDER: (130, 80), B.R_SHOULDER: (70, 80), B.L_ELBOW: (142, 140),
        B.R_ELBOW: (58, 140), B.L_WRIST: (148, 195), B.R_WRIST: (52, 195),
        17: (150, 208), 18: (50, 208), B.L_INDEX: (148, 212), B.R_INDEX: (52, 212),
        21: (144, 205), 22: (56, 205),
        B.L_HIP: (118, 200), B.R_HIP: (82, 200), B.L_KNEE: (118, 290), B.R_KNEE: (82, 290),
        B.L_ANKLE: (118, 370), B.R_ANKLE: (82, 370), B.L_HEEL: (116, 382), B.R_HEEL: (84, 382),
        B.L_TOE: (126, 392), B.R_TOE: (74, 392),
    }
    for index, (x, y) in points.items():
        p[index, :2] = (x, y)
    return p


@pytest.fixture(scope="module")
def regions() -> B.Regions:
    return B.body_regions(B.Body(standing_landmarks()[:, :2]), HEIGHT, WIDTH)


def test_segment_distance_is_zero_on_the_segment_and_euclidean_beyond_its_ends():
    grid = B.pixel_grid(20, 30)
    d = B.segment_distance(grid, np.array([5.0, 10.0]), np.array([25.0, 10.0]))
    assert d[10, 5] == 0 and d[10, 15] == 0 and d[10, 25] == 0
    assert d[4, 15] == pytest.approx(6.0)            # straight above the middle
    assert d[10, 0] == pytest.approx(5.0)            # beyond the left end
    assert d[13, 29] == pytest.approx(5.0)           # 3-4-5 from the right end


def test_body_lengths_come_from_the_landmarks():
    body = B.Body(standing_landmarks()[:, :2])
    assert body.torso_length == pytest.approx(120.0)
    assert body.shoulder_width == pytest.approx(60.0)
    assert body.hip_width == pytest.approx(36.0)
    assert body.scaled(0.5).torso_length == pytest.approx(60.0)


@pytest.mark.parametrize("x, y, part", [
    (100, 30, B.HEAD),     # forehead
    (100, 120, B.TORSO),   # chest
    (100, 195, B.TORSO),   # belly, just above the hip line
    (60, 110, B.ARM),      # right upper arm
    (148, 180, B.ARM),     # left forearm
    (82, 250, B.THIGH),
    (118, 330, B.CALF),
    (122, 390, B.FOOT),
])
def test_each_pixel_takes_its_nearest_body_part(regions, x, y, part):
    assert regions.part[y, x] == part


def test_waist_line_sits_above_the_hips_by_the_waist_rise(regions):
    waist_y = 200 - B.WAIST_RISE * 120  # hip line minus 15 % of the torso
    column = 100
    upper = regions.geometric_upper[:, column]
    lower = regions.geometric_lower[:, column]
    assert upper[int(waist_y) - 2] and not lower[int(waist_y) - 2]
    assert lower[int(waist_y) + 2] and not upper[int(waist_y) + 2]


def test_head_and_feet_are_in_neither_geometric_mask(regions):
    neither = ~regions.geometric_upper & ~regions.geometric_lower
    assert neither[30, 100] and neither[390, 122]
    assert regions.geometric_upper[120, 100] and regions.geometric_lower[250, 82]


def test_torso_axis_follows_a_tilted_body():
    """Rotating the figure (and the query point) leaves the geometry unchanged."""
    marks = standing_landmarks()[:, :2]
    centre = np.array([200.0, 200.0])
    rotated = (marks - [100, 200]) @ np.array([[0.0, 1.0], [-1.0, 0.0]]) + centre  # 90 degrees
    upright = B.body_regions(B.Body(marks), HEIGHT, WIDTH)
    lying = B.body_regions(B.Body(rotated.astype(np.float32)), 400, 400)
    for x, y in ((100, 120), (100, 195), (82, 250), (60, 110)):
        rx, ry = (np.array([x, y], float) - [100, 200]) @ np.array([[0.0, 1.0], [-1.0, 0.0]]) + centre
        ry_i, rx_i = round(ry), round(rx)
        assert lying.part[ry_i, rx_i] == upright.part[y, x]
        assert lying.t[ry_i, rx_i] == pytest.approx(upright.t[y, x], abs=0.02)


def test_breadth_is_the_shoulder_width_unless_the_body_is_turned_sideways():
    marks = standing_landmarks()[:, :2]
    broad = marks.copy()
    broad[B.L_SHOULDER, 0], broad[B.R_SHOULDER, 0] = 145, 55  # shoulders 90 px apart
    assert B.Body(broad).breadth == pytest.approx(90.0)
    turned = marks.copy()
    turned[B.L_SHOULDER, 0], turned[B.R_SHOULDER, 0] = 110, 90  # shoulders 20 px apart
    assert B.Body(turned).breadth == pytest.approx(B.MIN_BREADTH * 120.0)


def test_reach_is_measured_from_the_sleeves_not_from_the_hands(regions):
    """Just below the left index fingertip (148, 212) the pixel is nearest
    the hand, but its reach runs to the wrist (148, 195): garments end there."""
    assert regions.part[225, 148] == B.ARM
    assert regions.reach[225, 148] == pytest.approx(30.0, abs=0.5)
    assert regions.reach[140, 142] == pytest.approx(0.0)  # on the left elbow


def test_hand_distance_is_zero_at_each_hand_centre():
    body = B.Body(standing_landmarks()[:, :2])
    d = B.hand_distance(body, B.pixel_grid(HEIGHT, WIDTH))
    left = (np.array([148, 195]) + np.array([148, 212]) + np.array([150, 208])) / 3
    assert d[round(left[1]), round(left[0])] < 1.0
    assert d[205, 100] == pytest.approx(100 - (52 + 52 + 50) / 3, abs=1.0)  # between the hands
