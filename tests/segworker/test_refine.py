"""Mask refinement on synthetic masks."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from common.config import RefineSettings
from segworker import refine as R

NOTHING = RefineSettings(fill_holes=False, min_speck_fraction=0.0, dilation_fraction=0.0,
                         single_person=False)


def blob(shape, top, left, height, width) -> np.ndarray:
    m = np.zeros(shape, bool)
    m[top:top + height, left:left + width] = True
    return m


def test_small_enclosed_holes_are_filled():
    mask = blob((200, 200), 20, 20, 100, 100)
    mask[60:64, 60:64] = False           # a pinhole (16 px, 0.04 % of the image)
    filled = R.fill_holes(mask)
    assert filled[60:64, 60:64].all()
    assert filled.sum() == 100 * 100


def test_large_enclosed_areas_and_open_bays_are_kept():
    """The gap inside an arm on the hip is background, and so is a notch open to the outside."""
    mask = blob((200, 200), 20, 20, 150, 150)
    mask[50:110, 50:110] = False          # 3600 px = 9 % of the image: not a pinhole
    mask[20:40, 90:95] = False            # notch touching the mask's outline, open to outside
    out = R.fill_holes(mask)
    assert not out[50:110, 50:110].any()
    assert not out[20:40, 90:95].any()


def test_a_hole_touching_the_image_border_is_not_filled():
    mask = np.ones((100, 100), bool)
    mask[0:3, 40:43] = False
    assert not R.fill_holes(mask)[0:3, 40:43].any()


def test_specks_below_the_fraction_are_removed_and_larger_parts_kept():
    mask = blob((100, 100), 10, 10, 40, 40)            # 16 % of the image
    mask |= blob((100, 100), 80, 80, 3, 3)             # 9 px = 0.09 %
    mask |= blob((100, 100), 70, 10, 5, 10)            # 50 px = 0.5 %
    out = R.remove_specks(mask, 0.002)
    assert not out[80:83, 80:83].any()
    assert out[10:50, 10:50].all() and out[70:75, 10:20].all()


def test_a_speck_inside_a_large_ring_goes_and_the_ring_stays():
    """Regions are cleared inside their own bounding boxes: a speck within a
    kept ring's box must go and none of the ring with it."""
    mask = blob((200, 200), 20, 20, 160, 160) & ~blob((200, 200), 30, 30, 140, 140)
    ring = mask.copy()
    mask[100:102, 100:102] = True                       # 4 px speck, inside the ring's box
    out = R.remove_specks(mask, 0.002)
    assert np.array_equal(out, ring)


@pytest.mark.parametrize("count", [3, 200])  # a few regions, and more than MANY_REGIONS
def test_every_small_region_goes_however_many_there_are(count):
    rng = np.random.default_rng(count)
    body = blob((300, 300), 50, 50, 200, 200)
    mask, holes = body.copy(), body.copy()
    for y, x in rng.integers(0, 100, size=(count, 2)):
        mask[3 * (y % 10), 3 * x] = True               # one-pixel specks above the body
        holes[52 + 2 * (y % 97), 52 + 2 * (x % 97)] = False  # one-pixel pinholes inside it
    assert np.array_equal(R.remove_specks(mask, 0.002), body)
    assert np.array_equal(R.fill_holes(holes), body)


def test_dilation_margin_scales_with_the_image_diagonal():
    for side in (100, 400):
        mask = np.zeros((side, side), bool)
        mask[side // 2, side // 2] = True
        grown = R.dilate(mask, 0.01)
        radius = round(0.01 * np.hypot(side, side))
        row = grown[side // 2]
        assert row.sum() == 2 * radius + 1


def test_main_person_is_the_largest_central_one_with_both_parts():
    shape = (300, 300)
    upper = blob(shape, 50, 120, 60, 60) | blob(shape, 20, 5, 30, 20)     # centre + small figure
    lower = blob(shape, 115, 125, 100, 50) | blob(shape, 55, 5, 40, 20)   # (gap of 5 px to its upper)
    kept_upper, kept_lower = R.keep_main_person(upper, lower)
    assert kept_upper[50:110, 120:180].all() and kept_lower[115:215, 125:175].all()
    assert not kept_upper[:, :30].any() and not kept_lower[:, :30].any()


def test_a_central_person_beats_a_slightly_larger_one_at_the_edge():
    shape = (200, 400)
    edge = blob(shape, 20, 0, 150, 60)     # 9000 px at the left edge
    centre = blob(shape, 20, 170, 150, 55)  # 8250 px in the middle
    upper, _ = R.keep_main_person(edge | centre, np.zeros(shape, bool))
    assert upper[20:170, 170:225].all() and not upper[:, :60].any()


def test_refine_applies_the_configured_steps_only():
    mask = blob((200, 200), 20, 20, 100, 100)
    mask[60:62, 60:62] = False
    mask[190, 190] = True
    lower = np.zeros_like(mask)
    unchanged, _ = R.refine(mask, lower, NOTHING)
    assert (unchanged == mask).all()
    cleaned, _ = R.refine(mask, lower, dataclasses.replace(NOTHING, fill_holes=True,
                                                          min_speck_fraction=0.002))
    assert cleaned[60:62, 60:62].all() and not cleaned[190, 190]
    grown, _ = R.refine(mask, lower, dataclasses.replace(NOTHING, dilation_fraction=0.01))
    assert grown.sum() > mask.sum() and grown[19, 50] and not grown[10, 50]


def test_main_person_weight_is_area_discounted_off_centre():
    centred = blob((100, 100), 0, 45, 10, 10)
    at_edge = blob((100, 100), 0, 0, 10, 10)
    assert R.main_person_weight(centred) == pytest.approx(100, rel=0.02)
    assert R.main_person_weight(at_edge) == pytest.approx(100 * (1 - R.EDGE_PENALTY * 0.91))  # centre x 4.5 of 100
    assert R.main_person_weight(np.zeros((10, 10), bool)) == 0.0


def test_grouping_on_a_large_photo_keeps_every_pixel_of_the_main_person():
    """Large photos are grouped on a shrunk copy; no edge pixel may get lost."""
    rng = np.random.default_rng(0)
    shape = (2000, 1500)
    person = blob(shape, 300, 500, 1400, 500)
    ragged = blob(shape, 290, 490, 1420, 520) & (rng.random(shape) < 0.5)  # a noisy outline
    person |= ragged
    stranger = blob(shape, 100, 20, 300, 60)
    upper, lower = R.keep_main_person(person | stranger, np.zeros(shape, bool))
    assert (upper == person).all() and not lower.any()
