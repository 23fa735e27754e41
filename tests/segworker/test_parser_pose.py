"""The pose planes: BlazePose landmarks drawn as heatmaps in the network's crop."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage import data

from segworker.parser import augment, crop
from segworker.parser.infer import BASE_PLANES, network_input, uses_pose
from segworker.parser.network import NetShape, ParserNet
from segworker.parser.pose import POSE_JOINTS, POSE_PLANES, photo_planes, pose_planes

PHOTO = (300, 200)  # height, width
SHOULDERS, HIPS = POSE_PLANES.index("shoulders"), POSE_PLANES.index("hips")


def standing(visibility: float = 1.0) -> np.ndarray:
    """Landmarks of a person standing in a 300 x 200 photo: shoulders at y=80,
    hips at y=160 (torso 80 px), knees 220, ankles 280."""
    marks = np.zeros((33, 3), np.float32)
    for name, y in (("shoulders", 80), ("hips", 160), ("knees", 220), ("ankles", 280)):
        left, right = POSE_JOINTS[name]
        marks[left] = (120, y, visibility)
        marks[right] = (80, y, visibility)
    return marks


def peak(plane: np.ndarray) -> tuple[int, int]:
    y, x = np.unravel_index(int(np.argmax(plane)), plane.shape)
    return int(x), int(y)


def test_a_landmark_is_a_blob_where_the_matrix_puts_it():
    marks = standing()
    marks[POSE_JOINTS["shoulders"][1], 2] = 0.0  # right shoulder not seen
    matrix = crop.crop_matrix(100, 150, 150, 225)  # scale 256 / 150
    planes = pose_planes(marks, matrix, PHOTO)
    assert planes.shape == (len(POSE_PLANES), crop.INPUT_H, crop.INPUT_W)
    expected = matrix @ np.array([120.0, 80.0, 1.0])
    x, y = peak(planes[SHOULDERS])
    assert abs(x - expected[0]) <= 1 and abs(y - expected[1]) <= 1
    assert planes[SHOULDERS].max() == pytest.approx(1.0, abs=0.01)
    # the unseen right shoulder leaves nothing where it would be
    right = matrix @ np.array([80.0, 80.0, 1.0])
    assert planes[SHOULDERS][round(right[1]), round(right[0])] < 0.05
    # both hips are seen: two blobs, one plane
    for hx in (80.0, 120.0):
        hip = matrix @ np.array([hx, 160.0, 1.0])
        assert planes[HIPS][round(hip[1]), round(hip[0])] > 0.95


def test_blob_height_is_the_visibility_and_its_width_follows_the_person():
    marks = standing(visibility=0.4)
    near = pose_planes(marks, crop.crop_matrix(100, 150, 100, 150), PHOTO)
    far = pose_planes(marks, crop.crop_matrix(100, 150, 400, 600), PHOTO)
    assert near[SHOULDERS].max() == pytest.approx(0.4, abs=0.01)
    # the same person seen four times smaller: blobs four times narrower
    spread_near = (near[SHOULDERS] > 0.2).sum()
    spread_far = (far[SHOULDERS] > 0.2).sum()
    assert 10 < spread_near / spread_far < 22


def test_the_crop_of_the_photo_heatmaps_is_what_is_drawn_in_the_crop():
    marks = standing(visibility=0.8)
    matrix = crop.crop_matrix(95, 160, 160, 240, angle_deg=10.0, flip=True)
    cropped = np.stack([crop.crop_image(p, matrix) for p in photo_planes(marks, PHOTO)])
    np.testing.assert_allclose(pose_planes(marks, matrix, PHOTO), cropped, atol=0.03)


def test_a_mirrored_crop_mirrors_the_pose_planes_with_the_pixels():
    rgb = data.astronaut()[:300, 100:300].copy()
    prob = np.zeros(PHOTO, np.float32)
    prob[50:290, 60:140] = 1.0
    marks = standing()
    marks[POSE_JOINTS["knees"][0], 2] = 0.0  # one side only: still one plane, mirrored
    plain = network_input(rgb, prob, crop.crop_matrix(100, 150, 150, 225), marks, pose=True)
    flipped = network_input(rgb, prob, crop.crop_matrix(100, 150, 150, 225, flip=True), marks,
                            pose=True)
    assert plain.shape[0] == len(BASE_PLANES) + len(POSE_PLANES)
    # cv2 maps input column j of the mirrored crop onto column W - j of the plain one
    mirrored = plain[:, :, :0:-1]
    np.testing.assert_allclose(flipped[4:, :, 1:], mirrored[4:], atol=1e-4)
    np.testing.assert_allclose(flipped[:4, :, 1:], mirrored[:4], atol=1e-4)
    assert flipped[4:].max() > 0.9


def test_no_pose_and_landmarks_outside_the_photo_give_empty_planes():
    matrix = crop.crop_matrix(100, 150, 150, 225)
    assert not pose_planes(None, matrix, PHOTO).any()
    outside = standing()
    outside[:, 1] += 400  # all below the photo (a half-body photo's guessed legs)
    assert not pose_planes(outside, matrix, PHOTO).any()
    assert network_input(np.zeros((*PHOTO, 3), np.uint8), np.zeros(PHOTO, np.float32),
                         matrix).shape[0] == len(BASE_PLANES)


def test_training_blanks_the_pose_planes_of_some_samples():
    rgb = np.full((*PHOTO, 3), 128, np.uint8)
    classes = np.zeros(PHOTO, np.uint8)
    classes[60:290, 70:130] = 1
    prob = (classes > 0).astype(np.float32)
    blank = 0
    for seed in range(120):
        x, _ = augment.make_sample(rgb, prob, classes, np.random.default_rng(seed), standing(),
                                   pose=True)
        assert x.shape[0] == len(BASE_PLANES) + len(POSE_PLANES)
        blank += not x[4:].any()
    assert 0.05 < blank / 120 < 0.3  # DROP_POSE_P = 0.15


def test_the_network_width_chooses_the_input_planes():
    assert not uses_pose(ParserNet(NetShape(widths=(8, 8, 16, 16, 16), decoder_width=8)))
    net = ParserNet(NetShape(in_channels=8, widths=(8, 8, 16, 16, 16), decoder_width=8))
    assert uses_pose(net)
    with torch.no_grad():
        assert net(torch.zeros(1, 8, 64, 32)).shape == (1, 8, 32, 16)
