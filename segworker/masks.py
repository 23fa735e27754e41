"""Label maps to masks, and masks / label maps to PNG bytes.

Engine-neutral helpers shared by the SCHP, parser and pose engines and the
worker: pure numpy for the mask maths, Pillow for PNG encoding.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Sequence

import numpy as np
from PIL import Image

from common.config import LabelSet

#: Entries in a PNG palette (one per possible uint8 label id).
PALETTE_SIZE = 256

#: zlib level for mask PNGs (1 = fastest; masks are large flat areas that compress well anyway).
PNG_COMPRESS_LEVEL = 1


def mask_from_labels(label_map: np.ndarray, ids: Iterable[int]) -> np.ndarray:
    """Boolean ``H x W`` mask of the pixels whose label is in ``ids``.

    ``label_map`` is an integer array of label ids 0-255 (uint8 is fastest).
    """
    lookup = np.zeros(PALETTE_SIZE, dtype=bool)
    lookup[list(ids)] = True
    labels = np.asarray(label_map)
    if labels.dtype != np.uint8:
        if labels.size and (labels.min() < 0 or labels.max() >= PALETTE_SIZE):
            raise ValueError("label ids must be in 0-255")
        labels = labels.astype(np.uint8)
    return lookup[labels]


def label_masks(label_map: np.ndarray, labels: LabelSet) -> tuple[np.ndarray, np.ndarray]:
    """``(upper, lower)`` boolean masks for the label ids of ``labels``.

    A label may belong to both sets (a dress is upper and lower clothing).
    """
    return mask_from_labels(label_map, labels.upper), mask_from_labels(label_map, labels.lower)


def voc_palette(size: int = PALETTE_SIZE) -> list[int]:
    """The PASCAL-VOC colour map as ``3 * size`` ints (R, G, B per label id).

    Each label id's bits are dealt out in turn to R, G and B, from each
    channel's most significant bit down: 0 is black, 1 dark red, 2 dark green.
    """
    palette = []
    for label in range(size):
        rgb = [0, 0, 0]
        bits, shift = label, 7
        while bits:
            for channel in range(3):
                rgb[channel] |= ((bits >> channel) & 1) << shift
            bits >>= 3
            shift -= 1
        palette.extend(rgb)
    return palette


def encode_mask_png(mask: np.ndarray) -> bytes:
    """A single-channel 8-bit PNG: 255 where ``mask`` is true (or non-zero), else 0."""
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError("mask must be an H x W array")
    pixels = np.where(mask.astype(bool), 255, 0).astype(np.uint8)
    return _png(Image.fromarray(pixels))


def encode_palette_png(label_map: np.ndarray, palette: Sequence[int] | None = None) -> bytes:
    """A palette PNG whose pixel values are the label ids of ``label_map``
    (uint8, ``H x W``) and whose colours come from ``palette`` (768 ints;
    :func:`voc_palette` when None)."""
    labels = np.asarray(label_map)
    if labels.ndim != 2 or labels.dtype != np.uint8:
        raise ValueError("label_map must be an H x W uint8 array")
    image = Image.fromarray(np.ascontiguousarray(labels))
    image.putpalette(list(palette) if palette is not None else voc_palette())
    return _png(image)


def _png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
    return out.getvalue()
