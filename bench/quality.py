"""Mask quality of an engine against a labelled folder: IoU per photo and mean.

    venv/bin/python bench/quality.py --data DIR [--engine auto|parser|schp|pose] [--limit N]
                                     [--overlays D] [--save-dir D] [--types FILE]
                                     [--threads N] [--config PATH] [--no-refine]

DIR is laid out like the development set (see its README): ``images/<stem>.jpg``,
``masks/<stem>_upper.png``, ``masks/<stem>_lower.png``, ``masks/<stem>_ignore.png``
and optionally ``manifest.json`` (a list of ``{"stem": ...}``; otherwise every
image is used, in name order).

Scoring, per the set's README (:mod:`segworker.scoring`): pixels where ignore
is 255 do not count; a part whose reference covers under 0.5 % of the scored
pixels is *absent* in that photo and left out of the part's mean; a photo the
engine finds no person in counts as empty predictions. The means are also
given per outfit type (``--types``, by default the development set's types
when DIR is that set) and the time per photo at ``--threads`` torch threads
(default 1, the production layout), decode included.

``--overlays D`` writes one side-by-side PNG per photo to D: the photo, the
predicted masks over it (upper green, lower magenta) and the reference masks
(unscored pixels grey), for a person to look at.

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

from common.config import RefineSettings, load_settings
from common.photo import decode_rgb
from segworker.engine import NoPersonError
from segworker.engines import build_engine
from segworker.pipeline import refine_segmentation
from segworker.scoring import PARTS, load_reference, photo_paths, score_part

#: Refinement that changes nothing (for --no-refine).
NO_REFINE = RefineSettings(fill_holes=False, min_speck_fraction=0.0, dilation_fraction=0.0,
                           single_person=False)

#: The development set's outfit types (from its README), for --types.
DEV_TYPES = Path(__file__).resolve().parent / "dev_outfit_types.json"


def run(args: argparse.Namespace) -> int:
    torch_threads(args.threads)
    settings = load_settings(args.config)
    seg = dataclasses.replace(settings.segmentation, engine=args.engine or settings.segmentation.engine)
    served = NO_REFINE if args.no_refine else seg.refine
    # "served" first: the time per photo is taken when it is done.
    variants = {"served": served, "tight": dataclasses.replace(served, dilation_fraction=0.0)}
    engine = build_engine(dataclasses.replace(settings, segmentation=seg))
    print(f"engine: {engine.name} ({engine.selected_because})\nrefine (served): {served}\n"
          f"threads: {args.threads}")
    folders = {name: Path(d) for name, d in (("save", args.save_dir), ("overlays", args.overlays)) if d}
    for folder in folders.values():
        folder.mkdir(parents=True, exist_ok=True)
    data = Path(args.data)
    scores: dict[tuple[str, str], list[float]] = {(v, part): [] for v in variants for part in PARTS}
    per_photo: dict[str, dict[str, float | None]] = {}
    times: list[float] = []
    for stem, path in photo_paths(data, args.limit):
        started = time.perf_counter()
        rgb = decode_rgb(path.read_bytes(), settings.server.max_image_pixels)
        preds = _predict(engine, rgb, variants, started, times)
        refs, valid = load_reference(data, stem)
        cells = []
        for part in PARTS:
            row = {v: score_part(preds[v][part], refs[part], valid) for v in variants}
            for v, value in row.items():
                if value is not None:
                    scores[(v, part)].append(value)
            per_photo.setdefault(stem, {})[part] = row["tight"]
            cells.append(f"{part} " + ("absent" if row["tight"] is None else
                                       f"{row['tight']:.3f} (served {row['served']:.3f})"))
        note = "  no_person" if preds["tight"]["no_person"] else ""
        print(f"{stem}  {'  '.join(cells)}  {times[-1]:.0f} ms{note}")
        if "save" in folders:
            _save(folders["save"], stem, rgb, preds["served"])
        if "overlays" in folders:
            Image.fromarray(side_by_side(rgb, preds["served"], refs, valid)).save(
                folders["overlays"] / f"{stem}.png")
    _summary(scores, variants, times)
    _types_summary(per_photo, _outfit_types(args.types, data))
    return 0


def torch_threads(count: int) -> None:
    """Run every engine at ``count`` threads (torch and OpenCV), as a worker does."""
    import cv2
    import torch
    cv2.setNumThreads(count)
    torch.set_num_threads(count)


def side_by_side(rgb: np.ndarray, pred: dict, refs: dict[str, np.ndarray],
                 valid: np.ndarray) -> np.ndarray:
    """``photo | predicted masks over it | reference masks over it`` (unscored grey)."""
    from segworker.cli import overlay
    reference = overlay(rgb, refs["upper"], refs["lower"])
    reference[~valid] = (reference[~valid] * 0.3 + 110).astype(np.uint8)
    return np.concatenate([rgb, overlay(rgb, pred["upper"], pred["lower"]), reference], axis=1)


def _outfit_types(option: str | None, data: Path) -> dict[str, list[str]]:
    """``{type: [stems]}`` from ``--types``, or the development set's when
    DIR holds its photos; {} otherwise."""
    path = Path(option) if option else DEV_TYPES
    types = {k: v for k, v in json.loads(path.read_text()).items() if not k.startswith("_")}
    if option is None and not all((data / "images" / f"{stems[0]}.jpg").exists()
                                  for stems in types.values()):
        return {}
    return types


def _types_summary(per_photo: dict[str, dict[str, float | None]],
                   types: dict[str, list[str]]) -> None:
    if not types:
        return
    print("mean IoU per outfit type (tight; n = photos where the part is present):")
    worst = 1.0
    for name, stems in types.items():
        cells = []
        for part in PARTS:
            scored = (per_photo[s][part] for s in stems if s in per_photo)
            values = [v for v in scored if v is not None]
            if values:
                worst = min(worst, statistics.fmean(values))
            cells.append(f"{part} {statistics.fmean(values):.3f} (n={len(values)})" if values
                         else f"{part} absent")
        print(f"  {name:<10} {'  '.join(cells)}")
    print(f"lowest outfit-type mean: {worst:.3f}")


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


def _save(folder: Path, stem: str, rgb: np.ndarray, pred: dict) -> None:
    from segworker.cli import overlay
    for part in PARTS:  # pred also says whether a person was found
        Image.fromarray(pred[part].astype(np.uint8) * 255).save(folder / f"{stem}_{part}.png")
    Image.fromarray(overlay(rgb, pred["upper"], pred["lower"])).save(folder / f"{stem}_overlay.png")


def main() -> int:
    parser = argparse.ArgumentParser(description="Score an engine's masks against a labelled folder.")
    parser.add_argument("--data", required=True, help="labelled folder (images/, masks/)")
    parser.add_argument("--engine", choices=("auto", "parser", "schp", "pose"),
                        help="override segmentation.engine")
    parser.add_argument("--overlays", help="write photo | prediction | reference PNGs here")
    parser.add_argument("--types", help="JSON {type: [stems]} for per-type means "
                        "(default: the development set's, when DIR is that set)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch / OpenCV threads (default 1, as a production worker)")
    parser.add_argument("--limit", type=int, help="score only the first N photos")
    parser.add_argument("--save-dir", help="write predicted masks and overlays here")
    parser.add_argument("--config", help="config file (default: config.yaml)")
    parser.add_argument("--no-refine", action="store_true", help="score the raw engine masks")
    return run(parser.parse_args())


if __name__ == "__main__":
    sys.exit(main())
