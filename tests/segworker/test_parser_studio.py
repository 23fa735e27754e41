"""Training's studio perturbations: a plain backdrop behind the person, and a
top and skirt given one colour; both leave every other pixel as it was."""

from __future__ import annotations

import numpy as np

from segworker.parser import augment
from segworker.parser.classes import CLASS_NAMES
from segworker.parser.classes import LOWER_ID as LOWER
from segworker.parser.classes import UPPER_ID as UPPER

SKIN = CLASS_NAMES.index("skin")


def outfit(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A 120 x 60 street photo (noise) and its map: a head of skin, a red
    striped top on rows 30-60 and blue trousers on rows 60-110."""
    rng = np.random.default_rng(seed)
    rgb = rng.integers(0, 256, size=(120, 60, 3), dtype=np.uint8)
    classes = np.zeros((120, 60), np.uint8)
    classes[10:30, 22:38] = SKIN
    classes[30:60, 15:45] = UPPER
    classes[60:110, 18:42] = LOWER
    rgb[30:60, 15:45] = (200, 30, 30)
    rgb[30:60:4, 15:45] = (120, 10, 10)  # stripes: texture the recolouring must keep
    rgb[60:110, 18:42] = (30, 40, 160)
    return rgb, classes


def alike(a: np.ndarray, b: np.ndarray) -> bool:
    """The same pixels but for rounding (the blend's feathering reaches a
    little further than its visible rim)."""
    return bool(np.abs(a.astype(int) - b).max() <= 1)


def inner(mask: np.ndarray, margin: int = 5) -> np.ndarray:
    """``mask`` without its ``margin``-pixel rim (where the edge is blended)."""
    from scipy import ndimage
    return ndimage.binary_erosion(mask, iterations=margin)


def test_the_backdrop_replaces_the_background_and_only_it():
    rgb, classes = outfit()
    out = augment.studio_backdrop(rgb, classes, np.random.default_rng(3))
    person, ground = inner(classes != 0), inner(classes == 0)
    assert alike(out[person], rgb[person])
    # the street's noise is gone: a plain ground, a gentle gradient, a little grain
    assert out[ground].std(axis=0).max() < 20 < rgb[ground].std(axis=0).min()
    rows = out[:, :8].astype(float).mean(axis=(1, 2))
    assert np.abs(np.diff(rows)).max() < 6


def test_a_two_piece_outfit_is_painted_one_colour_with_its_texture():
    rgb, classes = outfit()
    out = augment.match_two_piece(rgb, classes, np.random.default_rng(5))
    top, bottom = inner(classes == UPPER), inner(classes == LOWER)
    before = np.abs(rgb[top].mean(axis=0) - rgb[bottom].mean(axis=0)).max()
    after = np.abs(out[top].astype(float).mean(axis=0) - out[bottom].mean(axis=0)).max()
    assert before > 100 and after < 12
    stripe, between = out[30:60:4, 20:40].astype(float), out[31:60:4, 20:40].astype(float)
    assert np.abs(stripe.mean() - between.mean()) > 5  # the stripes still show
    rest = inner((classes != UPPER) & (classes != LOWER))
    assert alike(out[rest], rgb[rest])


def test_a_photo_without_both_garments_is_not_painted():
    rgb, classes = outfit()
    dress = classes.copy()
    dress[dress == LOWER] = 0
    assert augment.match_two_piece(rgb, dress, np.random.default_rng(0)) is rgb


def test_without_studio_the_samples_are_those_of_the_earlier_weights():
    """``studio=False`` draws no random number for the perturbations, so the
    earlier weights' recipe (``--street-only``) still gives their samples; with
    it, some samples differ."""
    rgb, classes = outfit()
    prob = (classes != 0).astype(np.float32)
    differ = 0
    for seed in range(12):
        plain, _ = augment.make_sample(rgb, prob, classes, np.random.default_rng(seed))
        again, _ = augment.make_sample(rgb, prob, classes, np.random.default_rng(seed),
                                       studio=False)
        assert np.array_equal(plain, again)
        studio, _ = augment.make_sample(rgb, prob, classes, np.random.default_rng(seed),
                                        studio=True)
        differ += not np.array_equal(plain, studio)
    assert differ > 0


def garment_gap(inputs: np.ndarray, target: np.ndarray) -> float:
    """Largest difference, over the RGB planes, between the mean of the
    sample's top and the mean of its trousers."""
    top, bottom = target == UPPER, target == LOWER
    return float(np.abs(inputs[:3, top].mean(axis=1) - inputs[:3, bottom].mean(axis=1)).max())


def test_matched_p_is_the_chance_that_the_outfit_is_painted_one_colour():
    """``matched_p`` 1 paints every two-piece sample (its top and trousers end
    up close in colour), 0 none (red against blue, as photographed). Samples
    cut like half-body photos, without trousers, are left out."""
    rgb, classes = outfit()
    prob = (classes != 0).astype(np.float32)
    seen = 0
    for seed in range(8):
        always = augment.make_sample(rgb, prob, classes, np.random.default_rng(seed),
                                     studio=True, matched_p=1.0)
        never = augment.make_sample(rgb, prob, classes, np.random.default_rng(seed),
                                    studio=True, matched_p=0.0)
        if all((target == LOWER).any() for _, target in (always, never)):
            assert garment_gap(*always) < 0.5 and garment_gap(*never) > 1.5
            seen += 1
    assert seen >= 5
