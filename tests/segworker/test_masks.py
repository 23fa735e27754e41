"""Label maps to masks, the VOC palette, and the PNG encoders."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from common.config import LabelSet
from segworker.masks import (
    encode_mask_png,
    encode_palette_png,
    label_masks,
    mask_from_labels,
    voc_palette,
)


def _label_map() -> np.ndarray:
    """Rows of labels 0 (background), 4 (upper clothes), 7 (dress), 6 (pants), 11 (face)."""
    return np.repeat(np.array([0, 4, 7, 6, 11], dtype=np.uint8), 3)[:, None].repeat(5, axis=1)


def test_label_masks_take_each_set_and_share_overlapping_labels():
    upper, lower = label_masks(_label_map(), LabelSet(upper=(4, 7), lower=(5, 6, 7)))
    assert upper.dtype == bool and upper.shape == (15, 5)
    assert upper[:, 0].tolist() == [False] * 3 + [True] * 6 + [False] * 6
    assert lower[:, 0].tolist() == [False] * 6 + [True] * 6 + [False] * 3
    assert (upper & lower)[6:9].all()  # the dress belongs to both


def test_empty_label_set_and_missing_labels_give_empty_masks():
    assert not mask_from_labels(_label_map(), ()).any()
    assert not mask_from_labels(_label_map(), (17, 200)).any()


def test_wider_integer_label_maps_are_accepted_and_checked():
    labels = _label_map().astype(np.int64)
    assert np.array_equal(mask_from_labels(labels, (11,)), _label_map() == 11)
    with pytest.raises(ValueError, match="0-255"):
        mask_from_labels(np.array([[300]]), (1,))


def test_voc_palette_is_the_bit_interleaved_colour_map():
    palette = voc_palette()
    assert len(palette) == 768 and all(0 <= v <= 255 for v in palette)
    colours = [tuple(palette[i * 3:i * 3 + 3]) for i in range(256)]
    assert colours[:8] == [(0, 0, 0), (128, 0, 0), (0, 128, 0), (128, 128, 0),
                           (0, 0, 128), (128, 0, 128), (0, 128, 128), (128, 128, 128)]
    assert colours[8] == (64, 0, 0) and colours[15] == (192, 128, 128)
    assert colours[255] == (224, 224, 192)
    assert len(set(colours)) == 256
    assert voc_palette(20) == palette[:60]


def test_mask_png_is_single_channel_0_or_255():
    mask = np.zeros((7, 9), dtype=bool)
    mask[2:5, 3:8] = True
    image = Image.open(io.BytesIO(encode_mask_png(mask)))
    assert image.format == "PNG" and image.mode == "L" and image.size == (9, 7)
    pixels = np.asarray(image)
    assert set(np.unique(pixels)) == {0, 255}
    assert np.array_equal(pixels == 255, mask)
    assert encode_mask_png(mask.astype(np.uint8) * 255) == encode_mask_png(mask)
    with pytest.raises(ValueError, match="H x W"):
        encode_mask_png(np.zeros((2, 2, 3), bool))


def test_palette_png_stores_label_ids_as_pixel_indices():
    labels = _label_map()
    image = Image.open(io.BytesIO(encode_palette_png(labels)))
    assert image.mode == "P" and image.size == (5, 15)
    assert np.array_equal(np.asarray(image), labels)
    assert image.getpalette()[:768] == voc_palette()
    custom = [255 - v for v in voc_palette()]
    assert Image.open(io.BytesIO(encode_palette_png(labels, custom))).getpalette() == custom
    with pytest.raises(ValueError, match="uint8"):
        encode_palette_png(labels.astype(np.int32))
