"""Person probabilities of a folder of photos, computed once and kept on disk.

Training and its development-set score need the selfie model's person mask of
every photo in every epoch; computing them takes a minute, so they are kept in
a cache folder (``var/parser-cache`` by default) between runs.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
from PIL import Image


def person_probabilities(folder: Path, stems: list[str], cache: Path,
                         images: list[Path]) -> dict[str, np.ndarray]:
    """The selfie model's person probability (uint8 0-255) of every photo,
    computed once and kept in ``cache`` (keyed by folder and stems)."""
    cache.mkdir(parents=True, exist_ok=True)
    key = hashlib.sha256("\n".join([str(folder.resolve()), *stems]).encode()).hexdigest()[:16]
    path = cache / f"person-{key}.npz"
    if path.exists():
        with np.load(path) as data:
            return {stem: data[stem] for stem in stems}
    from tqdm import tqdm

    from segworker.parser.person import PersonFinder
    finder = PersonFinder()
    out = {}
    for stem, image in tqdm(list(zip(stems, images)), desc="person masks", unit="photo"):
        rgb = np.asarray(Image.open(image).convert("RGB"))
        out[stem] = np.round(finder.probability(rgb) * 255).astype(np.uint8)
    finder.close()
    np.savez_compressed(path, **out)
    return out


def pose_landmarks(folder: Path, stems: list[str], cache: Path, images: list[Path],
                   probs: dict[str, np.ndarray]) -> dict[str, np.ndarray | None]:
    """BlazePose landmarks (``33 x 3``, see :mod:`segworker.parser.pose`) of the
    main person of every photo, or None where it found nobody; the person is
    the one the selfie model's ``probs`` (as from :func:`person_probabilities`)
    place, as at inference. Computed once and kept in ``cache``."""
    cache.mkdir(parents=True, exist_ok=True)
    key = hashlib.sha256("\n".join(["pose-v1", str(folder.resolve()), *stems]).encode()).hexdigest()[:16]
    path = cache / f"pose-{key}.npz"
    if not path.exists():
        _compute_landmarks(path, stems, images, probs)
    with np.load(path) as data:
        table = data["landmarks"]
    return {stem: None if np.isnan(table[i]).any() else table[i] for i, stem in enumerate(stems)}


def _compute_landmarks(path: Path, stems: list[str], images: list[Path],
                       probs: dict[str, np.ndarray]) -> None:
    from tqdm import tqdm

    from segworker.parser.person import PersonFinder, person_box
    finder = PersonFinder()
    table = np.full((len(stems), 33, 3), np.nan, np.float32)
    for i, (stem, image) in enumerate(tqdm(list(zip(stems, images)), desc="pose landmarks",
                                           unit="photo")):
        box = person_box(probs[stem].astype(np.float32) / 255.0)
        if box is None:
            continue
        found = finder.landmarks(np.asarray(Image.open(image).convert("RGB")), box)
        if found is not None:
            table[i] = found
    finder.close()
    np.savez_compressed(path, landmarks=table)
