"""One photo through the service: engine, refinement, PNG encoding.

The worker calls :func:`process_photo`; the CLI and ``bench/quality.py`` call
:func:`segment_photo` (and :func:`encode_masks`) to see the masks and the time
each stage took.
"""

from __future__ import annotations

import time

import numpy as np

from common.config import RefineSettings
from common.wire import LOWER, SEG_MAP, STAGES, UPPER
from segworker.engine import Engine, NoPersonError, Segmentation
from segworker.masks import encode_mask_png, encode_palette_png
from segworker.refine import refine


class MaskFiles(dict):
    """PNG bytes by mask name, as :func:`process_photo` returns them, with the
    photo's stage times in ``timings_ms`` (stage -> milliseconds)."""

    timings_ms: dict[str, float]


def reported_stages(timings_ms: dict[str, float]) -> dict[str, float]:
    """An engine's stage times mapped onto :data:`common.wire.STAGES` (the names the
    broker keeps histograms of): every engine stage that is not ``preprocess`` or
    ``postprocess`` is model work and counts as ``forward`` (the parser: person)."""
    out: dict[str, float] = {}
    for name, ms in timings_ms.items():
        stage = name if name in STAGES else "forward"
        out[stage] = round(out.get(stage, 0.0) + ms, 3)
    return out


def segment_photo(engine: Engine, rgb: np.ndarray, refine_settings: RefineSettings) -> Segmentation:
    """Run ``engine`` on an upright RGB photo and refine its masks.

    Raises :class:`NoPersonError` when the engine finds no person or both
    masks are empty after refinement (never empty masks as a success), and
    whatever other :class:`~segworker.engine.EngineError` the engine raises.
    ``timings_ms`` holds the engine's own stages plus ``refine``.
    """
    return refine_segmentation(engine.segment(rgb), refine_settings)


def refine_segmentation(seg: Segmentation, refine_settings: RefineSettings) -> Segmentation:
    """Refine an engine's output (see :func:`segment_photo`) into a new
    :class:`Segmentation`; ``seg`` is not changed."""
    started = time.perf_counter()
    upper, lower = refine(seg.upper, seg.lower, refine_settings)
    timings = dict(seg.timings_ms, refine=(time.perf_counter() - started) * 1000)
    if not upper.any() and not lower.any():
        raise NoPersonError("no person found: no upper- or lower-body pixels in the photo")
    return Segmentation(upper, lower, seg.seg_map, seg.palette, timings)


def encode_masks(masks: Segmentation, write_seg_map: bool) -> dict[str, bytes]:
    """PNG bytes by mask name (:data:`common.wire.UPPER`, ``LOWER``, and
    ``SEG_MAP`` when ``write_seg_map`` is set and the engine made a label map).

    Adds the time taken to ``masks.timings_ms["encode"]``.
    """
    started = time.perf_counter()
    out = {UPPER: encode_mask_png(masks.upper), LOWER: encode_mask_png(masks.lower)}
    if write_seg_map and masks.seg_map is not None:
        out[SEG_MAP] = encode_palette_png(masks.seg_map, masks.palette)
    masks.timings_ms["encode"] = (time.perf_counter() - started) * 1000
    return out


def process_photo(engine: Engine, rgb: np.ndarray, refine_settings: RefineSettings,
                  write_seg_map: bool) -> dict[str, bytes]:
    """The worker's whole job for one decoded photo: ``{mask name: PNG bytes}``.

    Masks are 0/255 single-channel PNGs at the photo's size; ``seg_map`` is a
    palette PNG of label ids, present only when ``write_seg_map`` is set and
    the engine has labels (SCHP). Raises :class:`NoPersonError` (reason
    ``no_person``) when there is no person to mask.
    """
    masks = segment_photo(engine, rgb, refine_settings)
    files = MaskFiles(encode_masks(masks, write_seg_map))
    files.timings_ms = masks.timings_ms
    return files
