"""SCHP pre/post-processing: the affine crop, BGR order and statistics, the
inverse warp of the logits, and the argmax."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from segworker.schp import transforms
from segworker.schp.transforms import (
    MEAN_BGR,
    STD_BGR,
    affine_matrices,
    postprocess,
    preprocess,
    upsample_logits,
    warp_logits,
    warped_argmax,
)

#: (photo width, photo height, network input side), pixels.
SIZES = [(768, 1024, 512), (1024, 768, 473), (300, 300, 512), (97, 61, 64)]


def _warp(img: np.ndarray, matrix: np.ndarray, width: int, height: int) -> np.ndarray:
    return cv2.warpAffine(img, matrix, (width, height), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=(0.0, 0.0, 0.0, 0.0))


@pytest.mark.parametrize("width,height,size", SIZES)
def test_affine_is_the_align_corners_scale_of_the_w_minus_1_box(width, height, size):
    forward, inverse = affine_matrices(width, height, size)
    k = (size - 1) / max(width - 1, height - 1)
    expected = np.array([[k, 0, (size - 1) / 2 - k * (width - 1) / 2],
                         [0, k, (size - 1) / 2 - k * (height - 1) / 2]])
    np.testing.assert_allclose(forward, expected, atol=2e-5)
    # Long side: first and last pixel centres land on 0 and size-1.
    long_end = np.array([width - 1, height - 1, 1.0]) if width >= height else None
    if long_end is not None:
        assert forward[0] @ np.array([0, 0, 1.0]) == pytest.approx(0, abs=1e-4)
        assert forward[0] @ long_end == pytest.approx(size - 1, abs=1e-4)
    both = np.vstack([inverse, [0, 0, 1]]) @ np.vstack([forward, [0, 0, 1]])
    np.testing.assert_allclose(both, np.eye(3), atol=1e-5)


def test_round_trip_recovers_the_photo():
    yy, xx = np.mgrid[0:90, 0:120]
    smooth = 128 + 60 * np.sin(xx / 9.0)[..., None] * np.cos(yy / 11.0)[..., None]
    photo = np.repeat(smooth, 3, axis=2).astype(np.uint8)
    forward, inverse = affine_matrices(120, 90, 256)
    back = _warp(_warp(photo, forward, 256, 256), inverse, 120, 90)
    diff = np.abs(back.astype(int) - photo.astype(int))
    # The outermost pixels blend with the black padding; the rest comes back.
    assert diff[1:-1, 1:-1].max() <= 2
    assert diff.mean() < 0.5


def test_inverse_warp_of_logits_lands_on_photo_coordinates():
    width, height, size = 150, 100, 64
    _forward, inverse = affine_matrices(width, height, size)
    v, u = np.mgrid[0:size, 0:size].astype(np.float32)
    # Each network-grid pixel holds the photo x and y it came from.
    photo_x = inverse[0, 0] * u + inverse[0, 1] * v + inverse[0, 2]
    photo_y = inverse[1, 0] * u + inverse[1, 1] * v + inverse[1, 2]
    back = warp_logits(np.stack([photo_x, photo_y], axis=2), inverse, width, height)
    yy, xx = np.mgrid[0:height, 0:width]
    # Bilinear interpolation reproduces a linear field up to OpenCV's 1/32-pixel grid.
    np.testing.assert_allclose(back[..., 0], xx, atol=0.1)
    np.testing.assert_allclose(back[..., 1], yy, atol=0.1)


def test_preprocess_feeds_bgr_with_bgr_ordered_mean_and_std():
    photo = np.zeros((30, 40, 3), dtype=np.uint8)
    photo[...] = (255, 0, 0)  # pure red, RGB
    batch, _ = preprocess(photo, 32)
    assert batch.shape == (1, 3, 32, 32) and batch.dtype == torch.float32
    mean, std = np.array(MEAN_BGR), np.array(STD_BGR)
    assert MEAN_BGR == (0.406, 0.456, 0.485) and STD_BGR == (0.225, 0.224, 0.229)
    centre = batch[0, :, 16, 16].numpy()
    np.testing.assert_allclose(centre, (np.array([0.0, 0.0, 1.0]) - mean) / std, atol=1e-6)
    # Rows above the landscape photo are black padding, normalised like black pixels.
    np.testing.assert_allclose(batch[0, :, 0, 16].numpy(), -mean / std, atol=1e-6)


def test_preprocess_matches_the_reference_recipe_exactly():
    rng = np.random.default_rng(3)
    photo = rng.integers(0, 256, (70, 53, 3), dtype=np.uint8)
    batch, _ = preprocess(photo, 48)
    forward, _ = affine_matrices(53, 70, 48)
    bgr = _warp(cv2.cvtColor(photo, cv2.COLOR_RGB2BGR), forward, 48, 48)
    ref = torch.from_numpy(bgr).permute(2, 0, 1).float().div(255)
    ref = (ref - torch.tensor(MEAN_BGR)[:, None, None]) / torch.tensor(STD_BGR)[:, None, None]
    assert torch.equal(batch[0], ref)


@pytest.mark.parametrize("channels", [7, 18, 20])
def test_logit_warp_equals_one_warp_per_channel(channels):
    rng = np.random.default_rng(channels)
    hwc = rng.standard_normal((64, 64, channels)).astype(np.float32)
    _, inverse = affine_matrices(97, 61, 64)
    together = warp_logits(hwc, inverse, 97, 61)
    apart = np.stack([_warp(np.ascontiguousarray(hwc[:, :, c]), inverse, 97, 61)
                      for c in range(channels)], axis=2)
    assert together.shape == (61, 97, channels)
    assert np.array_equal(together, apart)


def test_logit_upsample_aligns_corners():
    logits = torch.arange(2 * 4 * 4, dtype=torch.float32).reshape(2, 4, 4)
    up = upsample_logits(logits, 13)
    assert up.shape == (13, 13, 2)
    for (i, j), (y, x) in {(0, 0): (0, 0), (0, 3): (0, 12), (3, 0): (12, 0),
                           (3, 3): (12, 12)}.items():
        assert np.array_equal(up[y, x], logits[:, i, j].numpy())
    assert up[4, 4, 0] == pytest.approx(float(logits[0, 1, 1]))


def test_postprocess_is_argmax_with_ties_to_the_lowest_label():
    logits = torch.zeros(5, 8, 8)
    logits[2, :, :4] = 1.0
    logits[4, :, :4] = 1.0   # tie with 2 on the left half: 2 wins
    logits[3, :, 4:] = -1.0  # right half: all others 0, tie -> label 0
    _, inverse = affine_matrices(40, 40, 32)
    labels = postprocess(logits, inverse, 40, 40, 32)
    assert labels.shape == (40, 40) and labels.dtype == np.uint8
    assert (labels[:, :15] == 2).all()
    assert (labels[:, 25:] == 0).all()


def test_large_photos_get_the_same_labels_a_few_channels_at_a_time(monkeypatch):
    rng = np.random.default_rng(9)
    hwc = rng.integers(-1, 2, (32, 32, 18)).astype(np.float32)  # ties everywhere
    hwc[:, :8, 5] = hwc[:, :8, 13] = 9.0  # a tie across channel groups: 5 must win
    _, inverse = affine_matrices(50, 40, 32)
    whole = warped_argmax(hwc, inverse, 50, 40)
    monkeypatch.setattr(transforms, "WHOLE_WARP_BYTES", 0)
    grouped = warped_argmax(hwc, inverse, 50, 40)
    assert np.array_equal(grouped, whole)
    assert (whole[:, :10] == 5).all()
    assert len(np.unique(whole)) > 5
