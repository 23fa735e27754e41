"""SCHP pre/post-processing against the reference extractor's own output.

The fixtures in ``fixtures/schp_golden/`` were made by running the reference
code (its dataset class and ``transform_logits``, OpenCV 4.11, torch 2.13) on
synthetic photos; see the README there. Every case must match byte for byte:
pre-processing gives exactly the reference's uint8 BGR network input, and
post-processing gives exactly its label map.

These tests are why ``opencv-contrib-python`` is pinned to 4.11 in
requirements.txt: OpenCV 5.0 warps uint8 photos differently (the network input
moves by up to ~5 grey levels), which changed about half the labels of a photo
with the random-weight test network. Do not bump that pin without these
tests passing.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from segworker.schp import transforms
from segworker.schp.transforms import normalise, postprocess, preprocess, warp_photo

GOLDEN = Path(__file__).parent / "fixtures" / "schp_golden"
CASES = json.loads((GOLDEN / "manifest.json").read_text())["cases"]
IDS = [case["name"] for case in CASES]


def _photo(name: str) -> np.ndarray:
    return np.asarray(Image.open(GOLDEN / f"photo_{name}.png").convert("RGB"))


def _reference_bgr(name: str) -> np.ndarray:
    with np.load(GOLDEN / f"warped_{name}.npz") as data:
        return data["bgr"]


def test_fixtures_were_made_with_the_pinned_opencv():
    manifest = json.loads((GOLDEN / "manifest.json").read_text())
    assert cv2.__version__.startswith(manifest["opencv"]), (
        f"OpenCV {cv2.__version__} is installed but the golden fixtures (and requirements.txt) "
        f"pin {manifest['opencv']}: other OpenCV versions warp uint8 photos differently")


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_preprocessing_gives_exactly_the_reference_network_input(case):
    rgb = _photo(case["name"])
    assert rgb.shape[:2] == (case["height"], case["width"])
    expected = _reference_bgr(case["name"])
    size = case["input_size"]
    assert expected.shape == (size, size, 3) and expected.dtype == np.uint8
    got, _ = warp_photo(rgb, size)
    differing = int(np.count_nonzero(got != expected))
    assert differing == 0, f"{differing} of {expected.size} input values differ"
    batch, _ = preprocess(rgb, size)
    assert torch.equal(batch, normalise(expected))


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_postprocessing_gives_exactly_the_reference_labels(case):
    with np.load(GOLDEN / f"logits_{case['name']}.npz") as data:
        logits = torch.from_numpy(data["logits"].astype(np.float32))
    assert list(logits.shape) == case["logits_shape"]
    expected = np.asarray(Image.open(GOLDEN / f"labels_{case['name']}.png"))
    width, height, size = case["width"], case["height"], case["input_size"]
    _, inverse = transforms.affine_matrices(width, height, size)
    with torch.inference_mode():
        labels = postprocess(logits, inverse, width, height, size)
    assert labels.shape == (height, width) and labels.dtype == np.uint8
    assert len(np.unique(expected)) == case["labels_present"]
    differing = int(np.count_nonzero(labels != expected))
    assert differing == 0, f"{differing} of {labels.size} labels differ from the reference"
