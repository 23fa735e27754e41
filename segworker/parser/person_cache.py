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
    from segworker.parser.person import PersonFinder
    from tqdm import tqdm
    finder = PersonFinder()
    out = {}
    for stem, image in tqdm(list(zip(stems, images)), desc="person masks", unit="photo"):
        rgb = np.asarray(Image.open(image).convert("RGB"))
        out[stem] = np.round(finder.probability(rgb) * 255).astype(np.uint8)
    finder.close()
    np.savez_compressed(path, **out)
    return out
