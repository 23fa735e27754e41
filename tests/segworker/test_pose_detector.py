"""Choosing the main figure when BlazePose tracks someone in the background.

MediaPipe is replaced by scripted fakes here; the real models run in
test_pose_engine.py.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from segworker.pose import detector as D

SHAPE = (200, 300)


def figure_mask(top: int, left: int, height: int, width: int) -> np.ndarray:
    m = np.zeros(SHAPE, np.float32)
    m[top:top + height, left:left + width] = 1.0
    return m


class FakePose:
    """Returns one scripted figure per call (None: nobody found); records the images."""

    def __init__(self, masks: list[np.ndarray | None]) -> None:
        self.masks = list(masks)
        self.seen: list[np.ndarray] = []

    def process(self, rgb: np.ndarray):
        self.seen.append(rgb.copy())
        mask = self.masks.pop(0) if self.masks else None
        if mask is None:
            return SimpleNamespace(pose_landmarks=None, segmentation_mask=None)
        ys, xs = np.nonzero(mask)
        h, w = rgb.shape[:2]  # MediaPipe reports positions as fractions of its input
        point = SimpleNamespace(x=xs.mean() / w, y=ys.mean() / h, visibility=1.0)
        return SimpleNamespace(pose_landmarks=SimpleNamespace(landmark=[point] * D.NUM_LANDMARKS),
                               segmentation_mask=mask)


class FakeSelfie:
    def __init__(self, mask: np.ndarray) -> None:
        self.mask = mask

    def process(self, rgb: np.ndarray):
        return SimpleNamespace(segmentation_mask=self.mask)


def detector(pose_masks, everyone) -> D.PoseDetector:
    d = D.PoseDetector.__new__(D.PoseDetector)  # no MediaPipe graphs
    d._pose, d._selfie = FakePose(pose_masks), FakeSelfie(everyone)
    return d


SMALL = figure_mask(20, 10, 60, 20)      # background figure at the left edge
BIG = figure_mask(10, 120, 180, 60)      # the subject, central


def test_the_subject_is_found_after_a_background_figure_is_painted_out():
    d = detector([SMALL, BIG], SMALL + BIG)
    seen = d.observe(np.full(SHAPE + (3,), 90, np.uint8))
    assert seen.passes == 2
    assert np.array_equal(seen.person.mask, BIG)
    second_input = d._pose.seen[1]
    painted = second_input[30, 15]                     # inside the small figure
    assert (painted == second_input.reshape(-1, 3).mean(axis=0).astype(np.uint8)).all()
    assert "pose_retry" in seen.timings_ms


def test_one_pass_when_the_tracked_figure_explains_the_selfie_mask():
    d = detector([BIG], BIG)
    seen = d.observe(np.zeros(SHAPE + (3,), np.uint8))
    assert seen.passes == 1 and np.array_equal(seen.person.mask, BIG)
    assert set(seen.timings_ms) == {"pose", "selfie"}


def test_a_smaller_second_figure_does_not_replace_the_subject():
    d = detector([BIG, SMALL], SMALL + BIG)
    seen = d.observe(np.zeros(SHAPE + (3,), np.uint8))
    assert np.array_equal(seen.person.mask, BIG)


def test_nobody_found_gives_none():
    d = detector([None], np.zeros(SHAPE, np.float32))
    assert d.observe(np.zeros(SHAPE + (3,), np.uint8)) is None


def test_landmarks_are_in_pixels_of_the_photo():
    d = detector([BIG], BIG)
    seen = d.observe(np.zeros(SHAPE + (3,), np.uint8))
    assert seen.person.landmarks.shape == (D.NUM_LANDMARKS, 3)
    assert np.allclose(seen.person.landmarks[0], (149.5, 99.5, 1.0), atol=0.01)


def test_large_photos_are_shrunk_for_the_models_and_results_scaled_back(monkeypatch):
    monkeypatch.setattr(D, "MODEL_SIDE", 150)             # the photo is twice that
    small_big = BIG[::2, ::2]
    d = detector([small_big], small_big)
    seen = d.observe(np.zeros(SHAPE + (3,), np.uint8))
    assert d._pose.seen[0].shape == (100, 150, 3)
    assert seen.person.mask.shape == SHAPE and seen.everyone.shape == SHAPE
    assert np.allclose(seen.person.landmarks[0, :2], (2 * 74.5, 2 * 49.5), atol=0.01)  # x2 back
