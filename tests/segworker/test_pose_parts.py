"""Garment masks from synthetic landmarks, person masks and a drawn figure."""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np
import pytest

from segworker.pose.parts import garment_masks
from tests.segworker.test_pose_body import HEIGHT, WIDTH, standing_landmarks

GREY, SKIN, HAIR = (128, 128, 128), (225, 180, 150), (60, 35, 20)
RED, BLUE, BLACK, YELLOW = (200, 30, 30), (30, 40, 160), (15, 15, 15), (230, 200, 40)


def draw_figure(top_hem_y: int = 190, hair_strands: bool = True) -> dict[str, np.ndarray]:
    """A drawn person matching :func:`standing_landmarks`: red top with long
    sleeves down to ``top_hem_y``, blue trousers, black shoes, a skin face
    with dark hair, optionally long hair falling onto the shoulders (beside
    the chest, as on most photos). Returns the
    image and the pixel sets of each drawn thing."""
    layers = {}

    # cv2 takes colours as sequences: (1,) fills a one-channel mask with 1.
    def layer(name: str, draw: Callable[[np.ndarray], object]) -> None:
        m = np.zeros((HEIGHT, WIDTH), np.uint8)
        draw(m)
        layers[name] = m > 0

    layer("trousers", lambda m: (cv2.rectangle(m, (80, 180), (120, 215), (1,), -1),
                                 cv2.line(m, (82, 200), (82, 370), (1,), 30),
                                 cv2.line(m, (118, 200), (118, 370), (1,), 30)))
    layer("top", lambda m: (cv2.rectangle(m, (68, 76), (132, top_hem_y), (1,), -1),
                            cv2.line(m, (70, 82), (58, 140), (1,), 18), cv2.line(m, (58, 140), (52, 192), (1,), 16),
                            cv2.line(m, (130, 82), (142, 140), (1,), 18), cv2.line(m, (142, 140), (148, 192), (1,), 16)))
    layer("hands", lambda m: (cv2.circle(m, (52, 204), 9, (1,), -1), cv2.circle(m, (148, 204), 9, (1,), -1)))
    layer("shoes", lambda m: (cv2.ellipse(m, (80, 384), (16, 9), 0, 0, 360, (1,), -1),
                              cv2.ellipse(m, (120, 384), (16, 9), 0, 0, 360, (1,), -1)))
    layer("neck", lambda m: cv2.rectangle(m, (92, 58), (108, 80), (1,), -1))
    layer("face", lambda m: cv2.ellipse(m, (100, 45), (17, 22), 0, 0, 360, (1,), -1))
    layer("hair", lambda m: (cv2.ellipse(m, (100, 36), (21, 18), 0, 180, 360, (1,), -1),
                             cv2.rectangle(m, (68, 34), (82, 118), (1,), -1) if hair_strands else None,
                             cv2.rectangle(m, (118, 34), (132, 118), (1,), -1) if hair_strands else None))
    rgb = np.empty((HEIGHT, WIDTH, 3), np.uint8)
    rgb[:] = GREY
    colours = {"trousers": BLUE, "top": RED, "hands": SKIN, "shoes": BLACK, "neck": SKIN,
               "face": SKIN, "hair": HAIR}
    for name, colour in colours.items():  # later layers cover earlier ones
        rgb[layers[name]] = colour
        for other in layers:
            if other != name and list(colours).index(other) < list(colours).index(name):
                layers[other] &= ~layers[name]
    person = np.zeros((HEIGHT, WIDTH), bool)
    for m in layers.values():
        person |= m
    return {"rgb": rgb, "person": person, **layers}


def masks_of(figure: dict, everyone: np.ndarray | None = None):
    person = figure["person"].astype(np.float32)
    return garment_masks(figure["rgb"], standing_landmarks(), person,
                         person if everyone is None else everyone)


def share(mask: np.ndarray, of: np.ndarray) -> float:
    return float((mask & of).sum() / max(of.sum(), 1))


@pytest.fixture(scope="module")
def figure():
    return draw_figure()


@pytest.fixture(scope="module")
def masks(figure):
    return masks_of(figure)


def test_masks_are_boolean_at_the_photo_size(masks):
    for m in (masks.upper, masks.lower):
        assert m.dtype == bool and m.shape == (HEIGHT, WIDTH)


def test_upper_is_the_top_and_lower_the_trousers(figure, masks):
    assert share(masks.upper, figure["top"]) > 0.9
    assert share(masks.lower, figure["trousers"]) > 0.9
    assert share(masks.upper, figure["trousers"]) < 0.1
    assert share(masks.lower, figure["top"]) < 0.1


def test_head_hair_and_shoes_are_in_neither_mask(figure, masks):
    either = masks.upper | masks.lower
    # the face down to the mouth; chin and neck go with the nearest torso segment
    assert share(either, figure["face"] & (np.arange(HEIGHT)[:, None] < 56)) < 0.02
    assert share(either, figure["shoes"]) < 0.1
    # hair falling onto the shoulders is not part of the top
    strands = figure["hair"] & (np.arange(HEIGHT)[:, None] > 80)
    assert strands.sum() > 50
    assert share(either, strands) < 0.25  # only the strands' edges, blurred with the top


def test_background_is_in_neither_mask(figure, masks):
    assert not ((masks.upper | masks.lower) & ~figure["person"]).any()


def test_a_top_hanging_below_the_waist_line_stays_upper_by_its_colour():
    tunic = draw_figure(top_hem_y=210)
    masks = masks_of(tunic)
    below_waist = tunic["top"] & (np.arange(HEIGHT)[:, None] > 186)
    assert below_waist.sum() > 500
    assert share(masks.upper, below_waist) > 0.8
    assert share(masks.lower, tunic["trousers"]) > 0.85


def test_pixels_the_selfie_model_doubts_are_dropped(figure):
    """A bag-like blob the selfie model is unsure of stays out of both masks."""
    doubted = np.zeros((HEIGHT, WIDTH), bool)
    doubted[230:300, 120:140] = True
    everyone = figure["person"].astype(np.float32)
    everyone[doubted] = 0.4
    masks = masks_of(figure, everyone)
    assert not ((masks.upper | masks.lower) & doubted).any()
    assert share(masks.lower, figure["trousers"] & ~doubted) > 0.9


@pytest.mark.parametrize("colour", [YELLOW, BLUE], ids=["unseen colour", "trouser colour"])
def test_a_bag_held_away_from_the_body_is_in_neither_mask(figure, colour):
    """A bag hanging from the left hand, beside the leg; the selfie model is
    sure of it, so only its place (and colour) give it away."""
    bag = np.zeros((HEIGHT, WIDTH), bool)
    bag[215:275, 150:180] = True
    with_bag = dict(figure, rgb=figure["rgb"].copy(), person=figure["person"] | bag)
    with_bag["rgb"][bag] = colour
    masks = masks_of(with_bag)
    assert share(masks.upper | masks.lower, bag) < 0.25
    assert share(masks.lower, figure["trousers"]) > 0.9


def test_an_empty_person_mask_gives_empty_masks(figure):
    nobody = np.zeros((HEIGHT, WIDTH), np.float32)
    masks = garment_masks(figure["rgb"], standing_landmarks(), nobody, nobody)
    assert not masks.upper.any() and not masks.lower.any()


def test_large_photos_are_analysed_shrunk_and_masks_come_back_full_size():
    small = draw_figure()
    scale = 4
    big = {k: cv2.resize(v.astype(np.uint8), (WIDTH * scale, HEIGHT * scale),
                         interpolation=cv2.INTER_NEAREST).astype(v.dtype) for k, v in small.items()}
    marks = standing_landmarks()
    marks[:, :2] *= scale
    person = big["person"].astype(np.float32)
    masks = garment_masks(big["rgb"], marks, person, person)
    assert masks.upper.shape == (HEIGHT * scale, WIDTH * scale)
    assert share(masks.upper, big["top"]) > 0.9
    assert share(masks.lower, big["trousers"]) > 0.9


def with_painted(figure: dict, name: str, region: np.ndarray, colour) -> dict:
    """A copy of ``figure`` with ``region`` painted ``colour`` and made part
    of the person, kept as the layer ``name``."""
    out = dict(figure, rgb=figure["rgb"].copy(), person=figure["person"] | region)
    out["rgb"][region] = colour
    out[name] = region
    return out


def test_a_long_coat_over_trousers_is_upper_below_the_waist(figure):
    """The top's red goes on down the outer thighs to the knees, as an open
    coat does; the blue trousers show between its sides and on the calves."""
    rows = np.arange(HEIGHT)[:, None]
    cols = np.arange(WIDTH)[None, :]
    coat = (rows >= 180) & (rows < 285) & (figure["trousers"] | ((cols >= 62) & (cols < 138)))
    coat &= (cols < 92) | (cols >= 108)  # open at the front
    coated = with_painted(figure, "coat", coat, RED)
    masks = masks_of(coated)
    below_waist = coat & (rows > 196)
    assert below_waist.sum() > 1500
    assert share(masks.upper, below_waist) > 0.7
    calves = figure["trousers"] & (rows > 295) & ~coat
    assert share(masks.lower, calves) > 0.85


def test_a_suit_is_split_at_the_waist_line(figure):
    """Top and trousers in one colour: the coat rule must not take the legs."""
    suit = dict(figure, rgb=figure["rgb"].copy())
    suit["rgb"][figure["trousers"]] = RED
    masks = masks_of(suit)
    assert share(masks.lower, figure["trousers"] & (np.arange(HEIGHT)[:, None] > 215)) > 0.9
    assert share(masks.upper, figure["top"] & (np.arange(HEIGHT)[:, None] < 170)) > 0.9


def test_a_clutch_in_the_hand_is_in_neither_mask_even_in_the_trousers_colour(figure):
    """Held at the hip in the trousers' own blue, close to the body: only the
    hand holding it says it is carried. (A clutch in the top's colour held
    against the top stays in the mask: the colour outweighs the hand.)"""
    clutch = np.zeros((HEIGHT, WIDTH), bool)
    clutch[200:226, 134:164] = True
    clutch &= ~figure["hands"]
    masks = masks_of(with_painted(figure, "clutch", clutch, BLUE))
    assert share(masks.upper | masks.lower, clutch) < 0.25
    assert share(masks.upper, figure["top"]) > 0.9
    assert share(masks.lower, figure["trousers"] & ~clutch) > 0.9


def test_a_photo_cut_at_the_waist_has_no_lower_body():
    """The landmarks still place the hips and legs (off the photo), but no
    thigh is in the silhouette: with no leg garment to learn from, nothing is
    called lower body, not even the trousers' waistband at the bottom edge."""
    short_top = draw_figure(top_hem_y=170)
    cut = 196
    person = short_top["person"][:cut].astype(np.float32)
    masks = garment_masks(short_top["rgb"][:cut], standing_landmarks(), person, person)
    assert short_top["trousers"][:cut].sum() > 500
    assert not masks.lower.any()
    assert share(masks.upper, short_top["top"][:cut]) > 0.9
