"""Training labels: a one-piece garment worn under a top is trained as the
top and skirt it looks like; a dress seen as a dress stays one-piece."""

from __future__ import annotations

import numpy as np

from segworker.parser.classes import CLASS_NAMES, LAYERED_SHARE, split_layered_one_piece
from segworker.parser.classes import LOWER_ID as LOWER
from segworker.parser.classes import ONE_PIECE_ID as ONE_PIECE
from segworker.parser.classes import UPPER_ID as UPPER

SKIN = CLASS_NAMES.index("skin")


def figure(top_rows: int, one_piece_rows: range, top_width: int = 20) -> np.ndarray:
    """A 100 x 40 map: a head of skin, a top of ``top_rows`` rows from row 20
    (``top_width`` wide), and one-piece pixels on ``one_piece_rows``."""
    classes = np.zeros((100, 40), np.uint8)
    classes[5:20, 15:25] = SKIN
    classes[list(one_piece_rows), 10:30] = ONE_PIECE
    classes[20:20 + top_rows, 20 - top_width // 2:20 + top_width // 2] = UPPER
    return classes


def test_a_dress_under_a_sweater_becomes_the_sweater_and_a_skirt():
    classes = figure(top_rows=30, one_piece_rows=range(50, 90))  # sweater over the waist
    out = split_layered_one_piece(classes)
    assert not (out == ONE_PIECE).any()
    assert (out[50:90, 10:30] == LOWER).all()     # what shows below the sweater is the skirt
    assert (out[20:50, 10:30] == UPPER).all()
    assert (out[5:20, 15:25] == SKIN).all() and classes[60, 15] == ONE_PIECE  # input unchanged


def test_a_bodice_seen_above_the_tops_middle_goes_with_the_top():
    # an open jacket (two 5-px panels) over a dress seen from row 20 down
    classes = figure(top_rows=0, one_piece_rows=range(20, 90))
    classes[20:60, 10:15] = UPPER
    classes[20:60, 25:30] = UPPER
    assert (classes == UPPER).sum() >= LAYERED_SHARE * (classes == ONE_PIECE).sum()
    out = split_layered_one_piece(classes)
    waist = int(np.median(np.nonzero(classes == UPPER)[0]))
    assert (out[20:waist + 1, 15:25] == UPPER).all()
    assert (out[waist + 1:60, 15:25] == LOWER).all() and (out[60:90, 10:30] == LOWER).all()
    assert (out[20:60, 10:15] == UPPER).all()  # the jacket itself is untouched


def test_a_dress_with_little_over_it_stays_one_piece():
    bare = figure(top_rows=0, one_piece_rows=range(20, 90))
    assert split_layered_one_piece(bare) is bare
    # a scarf: under LAYERED_SHARE of the dress
    scarf = figure(top_rows=5, one_piece_rows=range(25, 90), top_width=40)
    assert (scarf == UPPER).sum() < LAYERED_SHARE * (scarf == ONE_PIECE).sum()
    assert split_layered_one_piece(scarf) is scarf


def test_a_two_piece_outfit_is_left_alone():
    classes = figure(top_rows=30, one_piece_rows=range(0))
    classes[50:90, 10:30] = LOWER
    assert split_layered_one_piece(classes) is classes
