"""Mask quality against a labelled folder laid out like the development set.

The scoring rules of the development set's README, in one place for
``bench/quality.py`` and the parser's training command: pixels where the
ignore mask is 255 do not count; a part whose reference covers under
:data:`ABSENT_SHARE` of the scored pixels is *absent* from that photo and
left out of the part's mean; otherwise the score is the IoU.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

#: Reference share of the scored pixels under which a part is absent (fraction).
ABSENT_SHARE = 0.005

#: Mask value from which a pixel counts as predicted (0-255).
PREDICTED_LEVEL = 128

#: The two masks the service produces.
PARTS = ("upper", "lower")


def score_part(pred: np.ndarray, ref: np.ndarray, valid: np.ndarray) -> float | None:
    """IoU of boolean ``pred`` against ``ref`` over ``valid`` pixels, or None
    when the part is absent (reference under :data:`ABSENT_SHARE` of them)."""
    scored = int(valid.sum())
    ref = ref & valid
    if scored == 0 or ref.sum() / scored < ABSENT_SHARE:
        return None
    union = int(((pred | ref) & valid).sum())
    return float((pred & ref & valid).sum() / union) if union else 0.0


def load_reference(data: Path, stem: str) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """``({part: reference mask}, valid mask)`` of one photo."""
    def read(name: str) -> np.ndarray:
        return np.asarray(Image.open(data / "masks" / f"{stem}_{name}.png").convert("L"))
    refs = {part: read(part) == 255 for part in PARTS}
    return refs, read("ignore") == 0


def photo_paths(data: Path, limit: int | None = None) -> list[tuple[str, Path]]:
    """``(stem, image path)`` of the photos to score, manifest order first."""
    manifest = data / "manifest.json"
    images = {p.stem: p for p in sorted((data / "images").iterdir())
              if p.suffix.lower() in (".jpg", ".jpeg", ".png")}
    if manifest.exists():
        stems = [entry["stem"] for entry in json.loads(manifest.read_text())]
    else:
        stems = sorted(images)
    found = [(stem, images[stem]) for stem in stems if stem in images]
    return found[:limit] if limit else found


def outfit_types(data: Path) -> dict[str, list[str]]:
    """``{stem: garment names}`` from the folder's manifest (empty without one)."""
    manifest = data / "manifest.json"
    if not manifest.exists():
        return {}
    return {entry["stem"]: list(entry.get("garments", [])) for entry in json.loads(manifest.read_text())}
