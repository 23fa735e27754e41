"""Mask quality of an engine against a labelled folder: IoU per photo and mean.

    venv/bin/python bench/quality.py --data DIR [--engine pose|schp|auto] [--limit N]
                                     [--save-dir D] [--config PATH] [--no-refine]

DIR is laid out like the development set (see its README): ``images/<stem>.jpg``,
``masks/<stem>_upper.png``, ``masks/<stem>_lower.png``, ``masks/<stem>_ignore.png``
and optionally ``manifest.json`` (a list of ``{"stem": ...}``; otherwise every
image is used, in name order).

Scoring, per the set's README: pixels where ignore is 255 do not count; a
part whose reference covers under 0.5 % of the scored pixels is *absent* in
that photo and left out of the part's mean; a predicted pixel is a mask value
>= 128; a photo the engine finds no person in counts as empty predictions.

Each photo goes through the service's own path: ``decode_rgb`` -> engine ->
refinement (``segworker.pipeline``), with the settings of config.yaml / the
environment (``--engine`` overrides the engine choice, ``--no-refine`` turns
refinement off to score the engine alone).

The configured refinement grows each mask by a margin for try-on inpainting
(``dilation_fraction``), which the tight reference masks count as error. So
each photo is scored twice: ``tight`` (refinement without the margin: how
well the masks follow the garments) and ``served`` (exactly as configured:
what the service uploads). Both means are printed.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common.config import RefineSettings, load_settings  # noqa: E402
from common.photo import decode_rgb  # noqa: E402
from segworker.engine import NoPersonError  # noqa: E402
from segworker.engines import build_engine  # noqa: E402
from segworker.pipeline import refine_segmentation  # noqa: E402

#: Reference share of the scored pixels under which a part is absent (fraction).
ABSENT_SHARE = 0.005

#: Mask value from which a pixel counts as predicted (0-255).
PREDICTED_LEVEL = 128

PARTS = ("upper", "lower")

#: Refinement that changes nothing (for --no-refine).
NO_REFINE = RefineSettings(fill_holes=False, min_speck_fraction=0.0, dilation_fraction=0.0,
                           single_person=False)


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


def photo_paths(data: Path, limit: int | None) -> list[tuple[str, Path]]:
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


def run(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    seg = dataclasses.replace(settings.segmentation, engine=args.engine or settings.segmentation.engine)
    served = NO_REFINE if args.no_refine else seg.refine
    # "served" first: the time per photo is taken when it is done.
    variants = {"served": served, "tight": dataclasses.replace(served, dilation_fraction=0.0)}
    engine = build_engine(dataclasses.replace(settings, segmentation=seg))
    print(f"engine: {engine.name} ({engine.selected_because})\nrefine (served): {served}")
    save = Path(args.save_dir) if args.save_dir else None
    if save:
        save.mkdir(parents=True, exist_ok=True)
    scores = {(v, part): [] for v in variants for part in PARTS}
    times: list[float] = []
    for stem, path in photo_paths(Path(args.data), args.limit):
        started = time.perf_counter()
        rgb = decode_rgb(path.read_bytes(), settings.server.max_image_pixels)
        preds = _predict(engine, rgb, variants, started, times)
        refs, valid = load_reference(Path(args.data), stem)
        cells = []
        for part in PARTS:
            row = {v: score_part(preds[v][part], refs[part], valid) for v in variants}
            for v, value in row.items():
                if value is not None:
                    scores[(v, part)].append(value)
            cells.append(f"{part} " + ("absent" if row["tight"] is None else
                                       f"{row['tight']:.3f} (served {row['served']:.3f})"))
        note = "  no_person" if preds["tight"]["no_person"] else ""
        print(f"{stem}  {'  '.join(cells)}  {times[-1]:.0f} ms{note}")
        if save:
            _save(save, stem, rgb, preds["served"])
    _summary(scores, variants, times)
    return 0


def _predict(engine, rgb: np.ndarray, variants: dict[str, RefineSettings], started: float,
             times: list[float]) -> dict[str, dict]:
    """``{variant: {"upper", "lower", "no_person"}}``; a photo without a person
    (or with nothing left after refinement) counts as empty masks. Appends the
    milliseconds from ``started`` to the end of the first variant to ``times``."""
    empty = {"upper": np.zeros(rgb.shape[:2], bool), "lower": np.zeros(rgb.shape[:2], bool),
             "no_person": True}
    try:
        seg = engine.segment(rgb)
    except NoPersonError:
        times.append((time.perf_counter() - started) * 1000)
        return {v: empty for v in variants}
    out = {}
    for name, settings in variants.items():
        try:
            masks = refine_segmentation(seg, settings)
            out[name] = {"upper": masks.upper, "lower": masks.lower, "no_person": False}
        except NoPersonError:
            out[name] = empty
        if len(out) == 1:
            times.append((time.perf_counter() - started) * 1000)
    return out


def _summary(scores: dict[tuple[str, str], list[float]], variants: dict[str, RefineSettings],
             times: list[float]) -> None:
    for v in sorted(variants, key=lambda name: name != "tight"):
        for part in PARTS:
            values = scores[(v, part)]
            mean = f"{statistics.fmean(values):.4f}" if values else "n/a"
            print(f"mean IoU {part} ({v}): {mean} over {len(values)} images")
    if times:
        rest = times[1:] or times
        print(f"ms per photo (decode + engine + refine): mean {statistics.fmean(rest):.1f}, "
              f"median {statistics.median(rest):.1f} over {len(rest)} photos after the first; "
              f"first {times[0]:.1f}")


def _save(folder: Path, stem: str, rgb: np.ndarray, pred: dict[str, np.ndarray]) -> None:
    from segworker.cli import overlay
    for part, mask in pred.items():
        Image.fromarray(mask.astype(np.uint8) * 255).save(folder / f"{stem}_{part}.png")
    Image.fromarray(overlay(rgb, pred["upper"], pred["lower"])).save(folder / f"{stem}_overlay.png")


def main() -> int:
    parser = argparse.ArgumentParser(description="Score an engine's masks against a labelled folder.")
    parser.add_argument("--data", required=True, help="labelled folder (images/, masks/)")
    parser.add_argument("--engine", choices=("auto", "schp", "pose"),
                        help="override segmentation.engine")
    parser.add_argument("--limit", type=int, help="score only the first N photos")
    parser.add_argument("--save-dir", help="write predicted masks and overlays here")
    parser.add_argument("--config", help="config file (default: config.yaml)")
    parser.add_argument("--no-refine", action="store_true", help="score the raw engine masks")
    return run(parser.parse_args())


if __name__ == "__main__":
    sys.exit(main())
