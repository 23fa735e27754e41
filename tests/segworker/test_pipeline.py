"""process_photo: engine -> refinement -> PNGs, with scripted engines."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from common.config import RefineSettings
from common.wire import LOWER, SEG_MAP, UPPER
from segworker.engine import Engine, EngineError, NoPersonError, Segmentation
from segworker.masks import voc_palette
from segworker.pipeline import process_photo, segment_photo

SHAPE = (120, 80)
PLAIN = RefineSettings(fill_holes=False, min_speck_fraction=0.0, dilation_fraction=0.0,
                       single_person=False)


class ScriptedEngine(Engine):
    """Returns the given segmentation (or raises the given error)."""

    name = "scripted"

    def __init__(self, result: Segmentation | Exception) -> None:
        self.result = result

    def segment(self, rgb: np.ndarray) -> Segmentation:
        if isinstance(self.result, Exception):
            raise self.result
        return self.result


def box(top, left, height, width) -> np.ndarray:
    m = np.zeros(SHAPE, bool)
    m[top:top + height, left:left + width] = True
    return m


def photo() -> np.ndarray:
    return np.zeros(SHAPE + (3,), np.uint8)


def png_pixels(data: bytes) -> tuple[str, np.ndarray]:
    image = Image.open(io.BytesIO(data))
    return image.mode, np.asarray(image)


def test_masks_come_back_as_0_255_single_channel_pngs_at_the_photo_size():
    engine = ScriptedEngine(Segmentation(upper=box(10, 10, 40, 60), lower=box(60, 20, 50, 40)))
    out = process_photo(engine, photo(), PLAIN, write_seg_map=False)
    assert set(out) == {UPPER, LOWER}
    for name, expected in ((UPPER, box(10, 10, 40, 60)), (LOWER, box(60, 20, 50, 40))):
        mode, pixels = png_pixels(out[name])
        assert mode == "L" and pixels.shape == SHAPE
        assert set(np.unique(pixels)) == {0, 255}
        assert ((pixels == 255) == expected).all()


def test_seg_map_is_a_palette_png_of_label_ids_when_enabled_and_available():
    labels = np.zeros(SHAPE, np.uint8)
    labels[10:50, 10:70] = 4
    seg = Segmentation(upper=labels == 4, lower=box(60, 20, 50, 40), seg_map=labels,
                       palette=voc_palette())
    out = process_photo(ScriptedEngine(seg), photo(), PLAIN, write_seg_map=True)
    mode, pixels = png_pixels(out[SEG_MAP])
    assert mode == "P" and (pixels == labels).all()
    assert SEG_MAP not in process_photo(ScriptedEngine(seg), photo(), PLAIN, write_seg_map=False)


def test_no_seg_map_from_an_engine_without_labels_even_when_enabled():
    seg = Segmentation(upper=box(10, 10, 40, 60), lower=box(60, 20, 50, 40))
    assert set(process_photo(ScriptedEngine(seg), photo(), PLAIN, write_seg_map=True)) == {UPPER, LOWER}


def test_refinement_is_applied():
    upper = box(10, 10, 40, 60)
    upper[100, 5] = True                                   # a one-pixel speck
    seg = Segmentation(upper=upper, lower=box(60, 20, 50, 40))
    settings = RefineSettings(fill_holes=True, min_speck_fraction=0.002, dilation_fraction=0.0,
                              single_person=False)
    masks = segment_photo(ScriptedEngine(seg), photo(), settings)
    assert not masks.upper[100, 5] and masks.upper[10:50, 10:70].all()
    assert "refine" in masks.timings_ms


def test_empty_masks_are_no_person_never_a_success():
    empty = np.zeros(SHAPE, bool)
    with pytest.raises(NoPersonError) as err:
        process_photo(ScriptedEngine(Segmentation(upper=empty, lower=empty)), photo(), PLAIN, False)
    assert err.value.reason == "no_person"


def test_masks_that_refinement_empties_are_no_person():
    speck = np.zeros(SHAPE, bool)
    speck[5, 5] = True
    settings = RefineSettings(fill_holes=False, min_speck_fraction=0.01, dilation_fraction=0.0,
                              single_person=False)
    with pytest.raises(NoPersonError):
        process_photo(ScriptedEngine(Segmentation(upper=speck, lower=speck)), photo(), settings, False)


def test_one_empty_part_is_fine():
    seg = Segmentation(upper=box(10, 10, 40, 60), lower=np.zeros(SHAPE, bool))
    out = process_photo(ScriptedEngine(seg), photo(), PLAIN, False)
    assert (png_pixels(out[LOWER])[1] == 0).all()


def test_engine_errors_pass_through():
    for error in (NoPersonError("nobody"), EngineError("boom", reason="engine_error")):
        with pytest.raises(type(error)):
            process_photo(ScriptedEngine(error), photo(), PLAIN, False)


def test_process_photo_reports_its_stage_times_under_the_wire_names():
    from common.wire import STAGES
    from segworker.pipeline import reported_stages
    seg = Segmentation(upper=box(10, 10, 60, 40), lower=box(70, 10, 40, 40),
                       timings_ms={"person": 2.0, "forward": 1.5, "postprocess": 0.5})
    out = process_photo(ScriptedEngine(seg), photo(), PLAIN, False)
    stages = reported_stages(out.timings_ms)
    assert set(stages) == {"forward", "postprocess", "refine", "encode"} <= set(STAGES)
    assert stages["forward"] == 3.5 and stages["postprocess"] == 0.5
