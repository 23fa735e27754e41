"""Scoring the parser on a labelled development folder during training.

Each photo takes the service's own path (person probability, crop, network,
labels back in the photo, the configured label sets, refinement), so the
figure printed after an epoch is the figure ``bench/quality.py`` prints.
"""

from __future__ import annotations

import statistics
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from common.config import LabelSet, RefineSettings
from segworker.masks import label_masks
from segworker.parser.infer import parse
from segworker.parser.person_cache import person_probabilities, pose_landmarks
from segworker.refine import refine
from segworker.scoring import PARTS, load_reference, photo_paths, score_part


class DevSet:
    """Photos, references, person probabilities and (with ``pose``) BlazePose
    landmarks of a development folder, in memory."""

    def __init__(self, folder: Path, cache: Path, labels: LabelSet,
                 refine_settings: RefineSettings, pose: bool = False) -> None:
        self.labels, self.refine = labels, refine_settings
        found = photo_paths(folder)
        stems, images = [stem for stem, _ in found], [path for _, path in found]
        probs = person_probabilities(folder, stems, cache, images)
        marks = pose_landmarks(folder, stems, cache, images, probs) if pose else {}
        self.items = []
        for stem, path in found:
            rgb = np.asarray(Image.open(path).convert("RGB"))
            refs, valid = load_reference(folder, stem)
            self.items.append((rgb, probs[stem].astype(np.float32) / 255.0, marks.get(stem),
                               refs, valid))

    def score(self, model: torch.nn.Module) -> dict[str, float]:
        """``{"dev_upper": mean IoU, "dev_lower": mean IoU}`` of ``model``."""
        model.eval()
        scores: dict[str, list[float]] = {part: [] for part in PARTS}
        for rgb, prob, landmarks, refs, valid in self.items:
            upper, lower = label_masks(parse(model, rgb, prob, landmarks), self.labels)
            masks = dict(zip(PARTS, refine(upper, lower, self.refine)))
            for part in PARTS:
                value = score_part(masks[part], refs[part], valid)
                if value is not None:
                    scores[part].append(value)
        return {f"dev_{part}": round(statistics.fmean(v), 4) if v else 0.0
                for part, v in scores.items()}
