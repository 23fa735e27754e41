"""Training's low-resolution epochs: the same crop at half the input's size."""

from __future__ import annotations

import numpy as np
import pytest

from segworker.parser import augment, crop
from segworker.parser.pose import POSE_JOINTS, pose_planes

from .test_parser_studio import outfit


def test_a_shrunk_crop_puts_each_label_where_the_full_one_does():
    _rgb, classes = outfit()
    matrix = crop.crop_matrix(30, 60, 60, 90, angle_deg=7.0)
    full = crop.crop_image(classes, matrix, interpolation=0)
    small_matrix, size = crop.shrunk(matrix, 0.5)
    small = crop.crop_image(classes, small_matrix, interpolation=0, size=size)
    assert size == (crop.INPUT_H // 2, crop.INPUT_W // 2) and small.shape == size
    # a half-size pixel covers a 2 x 2 block of full-size ones: it takes one of their labels
    blocks = np.stack([full[dy::2, dx::2] for dy in (0, 1) for dx in (0, 1)])
    assert (blocks == small).any(axis=0).mean() > 0.995
    for label in np.unique(full):
        ys, xs = np.nonzero(full == label)
        sy, sx = np.nonzero(small == label)
        # pixel centres aligned: half-size pixel i covers full-size pixels 2i and 2i + 1
        assert abs(sy.mean() * 2 + 0.5 - ys.mean()) < 0.1 and abs(sx.mean() * 2 + 0.5 - xs.mean()) < 0.1


def test_a_low_resolution_sample_is_the_same_sample_smaller():
    """The same random numbers are drawn at any resolution: the half-size
    sample is the full one's crop, and the draws after it are the same."""
    rgb, classes = outfit()
    prob = (classes != 0).astype(np.float32)
    marks = np.zeros((33, 3), np.float32)
    for name, y in (("shoulders", 32), ("hips", 62), ("knees", 85), ("ankles", 105)):
        for i, x in zip(POSE_JOINTS[name], (35, 25)):
            marks[i] = (x, y, 1.0)
    for seed in range(6):
        rngs = np.random.default_rng(seed), np.random.default_rng(seed)
        (full_x, full_y), (half_x, half_y) = (
            augment.make_sample(rgb, prob, classes, rng, marks, pose=True, studio=True,
                                resolution=r) for rng, r in zip(rngs, (1.0, 0.5)))
        assert rngs[0].random() == rngs[1].random()
        assert half_x.shape == (8, crop.INPUT_H // 2, crop.INPUT_W // 2)
        assert half_y.shape == (crop.INPUT_H // 2, crop.INPUT_W // 2)
        blocks = np.stack([full_y[dy::2, dx::2] for dy in (0, 1) for dx in (0, 1)])
        assert (blocks == half_y).any(axis=0).mean() > 0.99
        # the person and pose planes are the full ones, averaged down
        pooled = full_x.reshape(8, crop.INPUT_H // 2, 2, crop.INPUT_W // 2, 2).mean(axis=(2, 4))
        assert np.abs(pooled[3:] - half_x[3:]).mean() < 0.05


def test_pose_planes_at_a_size_draw_the_blob_at_the_shrunk_place():
    marks = np.zeros((33, 3), np.float32)
    marks[POSE_JOINTS["hips"][0]] = (120, 160, 1.0)
    matrix, size = crop.shrunk(crop.crop_matrix(100, 150, 150, 225), 0.5)
    planes = pose_planes(marks, matrix, (300, 200), size)
    assert planes.shape == (4, *size)
    y, x = np.unravel_index(int(np.argmax(planes[1])), size)
    expected = matrix @ np.array([120.0, 160.0, 1.0])
    assert abs(x - expected[0]) <= 1 and abs(y - expected[1]) <= 1
    assert planes[1].max() == pytest.approx(1.0, abs=0.02)
