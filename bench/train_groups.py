"""Mask quality on a training folder's photos, by kind of outfit, dresses scored as served.

    venv/bin/python bench/train_groups.py --data DIR [--weights W ...] [--every 3]
                                          [--cache var/parser-cache] [--config PATH]

The development set cannot price a one-piece call: it leaves dress pixels
unscored. The training photos' labels can, so this scores every ``--every``-th
photo of a folder laid out like ``train-ccp`` (``images/``, ``labels/`` with
CCP-59 ids), in three groups:

- ``two_piece``: no one-piece garment in the labels;
- ``plain_dress``: a one-piece garment with little or nothing over it, scored
  **in both masks**, as the service serves a one-piece pixel;
- ``layered``: a one-piece garment under a top, scored as the top and skirt
  training takes it for (:func:`segworker.parser.classes.split_layered_one_piece`).

These photos were trained on, so the figures compare weights files with each
other (a recipe that calls plain dresses two pieces, or two-piece outfits one
piece, shows it here); they say nothing of photos nobody trained on. Each
photo goes through the parser as a worker runs it (crop, network, one-piece
rule, label sets of the config, refinement), in fp32, with the person masks
and landmarks of the training command's ``--cache`` (computed once).
Prints one line per weights file: the mean IoU of each group and part.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.parser_files import add_weights_options, weights_files
from bench.quality import torch_threads
from common.config import LabelSet, RefineSettings, load_settings
from segworker.masks import label_masks
from segworker.parser import weights
from segworker.parser.classes import ONE_PIECE_ID, ccp_lookup, split_layered_one_piece
from segworker.parser.infer import parse
from segworker.parser.person_cache import person_probabilities, pose_landmarks
from segworker.parser.train import training_stems
from segworker.refine import refine
from segworker.scoring import PARTS, score_part

#: The groups, in the order they are printed.
GROUPS = ("two_piece", "plain_dress", "layered")


def outfit_group(classes: np.ndarray) -> tuple[str, np.ndarray]:
    """``(group, reference class map)`` of a parser class map (see the module doc)."""
    if not (classes == ONE_PIECE_ID).any():
        return "two_piece", classes
    split = split_layered_one_piece(classes)
    return ("plain_dress", classes) if split is classes else ("layered", split)


def photos(folder: Path, every: int, cache: Path, labels: LabelSet) -> Iterator[tuple]:
    """``(group, rgb, person probability, landmarks, (upper ref, lower ref))``."""
    stems = training_stems(folder)[::every]
    images = [folder / "images" / f"{s}.jpg" for s in stems]
    probs = person_probabilities(folder, stems, cache, images)
    marks = pose_landmarks(folder, stems, cache, images, probs)
    lookup = ccp_lookup()
    for stem, image in zip(stems, images):
        group, ref = outfit_group(lookup[np.asarray(Image.open(folder / "labels" / f"{stem}.png"))])
        rgb = np.asarray(Image.open(image).convert("RGB"))
        yield (group, rgb, probs[stem].astype(np.float32) / 255.0, marks.get(stem),
               label_masks(ref, labels))


def group_means(net, items: list[tuple], labels: LabelSet,
                settings: RefineSettings) -> dict[str, dict[str, float | int]]:
    """``{group: {"upper": mean IoU, "lower": ..., "n": photos}}``."""
    scores: dict[str, dict[str, list[float]]] = {}
    counts: dict[str, int] = {}
    for group, rgb, prob, landmarks, refs in items:
        counts[group] = counts.get(group, 0) + 1
        masks = refine(*label_masks(parse(net, rgb, prob, landmarks), labels), settings)
        valid = np.ones(rgb.shape[:2], bool)
        for part, pred, ref in zip(PARTS, masks, refs):
            value = score_part(pred, ref, valid)
            if value is not None:
                scores.setdefault(group, {}).setdefault(part, []).append(value)
    return {g: {**{p: round(statistics.fmean(v), 3) for p, v in scores.get(g, {}).items()},
                "n": counts[g]} for g in GROUPS if g in counts}


def run(args: argparse.Namespace) -> int:
    torch_threads(args.threads)
    settings = load_settings(args.config).segmentation
    labels = settings.parser.labels
    items = list(photos(Path(args.data), args.every, Path(args.cache), labels))
    print(f"photos: {len(items)} (one in {args.every} of {args.data})")
    for path in weights_files(args):
        net, _ = weights.load(path)  # in eval mode
        print(f"{path} {json.dumps(group_means(net, items, labels, settings.refine))}", flush=True)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description="Parser mask quality on training photos, by "
                                     "kind of outfit (dresses scored in both masks).")
    parser.add_argument("--data", required=True, help="folder laid out like train-ccp")
    parser.add_argument("--every", type=int, default=3, help="score every N-th photo (default 3)")
    parser.add_argument("--cache", default="var/parser-cache",
                        help="person masks and landmarks, as the training command keeps them")
    add_weights_options(parser)
    args = parser.parse_args()
    if args.every < 1:
        parser.error("--every must be at least 1")
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
