"""How much of each photo's garment a parser weights file calls one-piece.

    venv/bin/python bench/one_piece_share.py --photos DIR [--weights W ...]
                                             [--one-piece FILE] [--threads N]

A one-piece pixel is in both masks, so a two-piece outfit called one-piece
puts the shorts in the upper mask: the failure the development set cannot
see (it leaves dress pixels unscored, see docs/parser.md). This prints, for
every photo of DIR (``images/`` or the folder itself) and every weights file
(default: the committed one), the **share of the network's garment pixels**
(upper, lower and one-piece garment, in the class map before refinement)
that are one-piece, then one summary line per file: the two-piece photos
whose share is not zero, and the share of every photo that shows a one-piece
garment (there more is right).

Which photos show a one-piece garment is ``--one-piece``: a JSON list of
stems, or an object whose ``one_piece`` key is one; by default
``bench/look_one_piece.json`` (the photos of ``../shared/look-photos`` that
show a dress) when DIR holds those photos, otherwise none. A photo the
person check finds no one in is reported as ``no_person``.

Each photo goes through the engine as a worker runs it (person, pose, crop,
network, one-piece rule), in fp32 so the figure does not depend on the CPU.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.parser_files import add_weights_options, weights_files
from bench.quality import torch_threads
from common.config import load_settings
from segworker.engine import NoPersonError
from segworker.parser import weights
from segworker.parser.classes import LOWER_ID, ONE_PIECE_ID, UPPER_ID
from segworker.parser.engine import ParserEngine
from segworker.parser.person import PersonFinder

#: The look photos that show a one-piece garment (stems), for --one-piece.
LOOK_ONE_PIECE = Path(__file__).resolve().parent / "look_one_piece.json"

#: Image file endings read from --photos.
SUFFIXES = (".jpg", ".jpeg", ".png")


def one_piece_share(seg_map: np.ndarray) -> float | None:
    """Share of the garment pixels (upper, lower, one-piece) of a parser class
    map that are one-piece; None when there are none."""
    garment = int(np.isin(seg_map, (UPPER_ID, LOWER_ID, ONE_PIECE_ID)).sum())
    return float((seg_map == ONE_PIECE_ID).sum() / garment) if garment else None


def photos_in(folder: Path) -> list[Path]:
    """The images of ``folder/images`` (or of ``folder`` itself), in name order."""
    inner = folder / "images"
    root = inner if inner.is_dir() else folder
    return sorted(p for p in root.iterdir() if p.suffix.lower() in SUFFIXES)


def one_piece_stems(option: str | None, stems: list[str]) -> set[str]:
    """The stems of ``--one-piece``, or of :data:`LOOK_ONE_PIECE` when every
    one of them is among ``stems`` (the look photos); else none."""
    raw = json.loads(Path(option or LOOK_ONE_PIECE).read_text())
    listed = set(raw["one_piece"] if isinstance(raw, dict) else raw)
    if option is None and not listed <= set(stems):
        return set()
    return listed


def shares(engine: ParserEngine, paths: list[Path]) -> dict[str, float | None | str]:
    """``{stem: share}`` (``"no_person"`` where the person check found nobody)."""
    out: dict[str, float | None | str] = {}
    for path in paths:
        rgb = np.asarray(Image.open(path).convert("RGB"))
        try:
            seg_map = engine.segment(rgb).seg_map
        except NoPersonError:
            out[path.stem] = "no_person"
            continue
        assert seg_map is not None  # the parser engine always returns its class map
        out[path.stem] = one_piece_share(seg_map)
    return out


def summary(found: dict[str, float | None | str], one_piece: set[str]) -> str:
    """One line: the two-piece photos with a share above zero (at two decimals),
    then every one-piece photo's share."""
    def cell(stem: str) -> str:
        value = found[stem]
        return f"{stem} {value:.2f}" if isinstance(value, float) else f"{stem} {value}"

    def shown(value: float | None | str) -> bool:
        return isinstance(value, float) and round(value, 2) > 0

    two_piece = [cell(s) for s in found if s not in one_piece and shown(found[s])]
    dresses = [cell(s) for s in found if s in one_piece]
    return (f"two-piece photos above 0.00: {', '.join(two_piece) or 'none'}"
            f" | one-piece photos: {', '.join(dresses) or 'none listed'}")


def run(args: argparse.Namespace) -> int:
    torch_threads(args.threads)
    paths = photos_in(Path(args.photos))
    one_piece = one_piece_stems(args.one_piece, [p.stem for p in paths])
    labels = load_settings(args.config).segmentation.parser.labels
    finder = PersonFinder()  # the person models do not depend on the weights: loaded once
    try:
        for path in weights_files(args):
            net, _ = weights.load(path)
            found = shares(ParserEngine(net, labels, finder=finder), paths)
            print(f"weights: {path}")
            for stem, value in found.items():
                text = f"{value:.3f}" if isinstance(value, float) else str(value)
                print(f"  {stem}  {text}{'  (one-piece)' if stem in one_piece else ''}")
            print(f"  {summary(found, one_piece)}", flush=True)
    finally:
        finder.close()
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description="Share of each photo's garment a parser "
                                     "weights file calls one-piece.")
    parser.add_argument("--photos", required=True, help="folder of photos (or with images/)")
    parser.add_argument("--one-piece", help="JSON list of the stems that show a one-piece "
                        "garment (default: bench/look_one_piece.json, for the look photos)")
    add_weights_options(parser)
    return run(parser.parse_args())


if __name__ == "__main__":
    sys.exit(main())
