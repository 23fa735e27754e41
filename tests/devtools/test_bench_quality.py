"""bench/quality.py end to end on a one-photo labelled folder (the astronaut)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image
from skimage import data

ROOT = Path(__file__).resolve().parents[2]


def labelled_folder(root: Path) -> Path:
    """The astronaut, with the upper reference where her suit is (the lower
    left of the frame) and nothing scored above her shoulders."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rgb = data.astronaut()
    Image.fromarray(rgb).save(root / "images" / "astro.jpg", quality=90)
    h, w = rgb.shape[:2]
    upper = np.zeros((h, w), np.uint8)
    upper[h * 2 // 3:, : w // 2] = 255
    ignore = np.zeros((h, w), np.uint8)
    ignore[: h // 3] = 255
    for name, mask in (("upper", upper), ("lower", np.zeros_like(upper)), ("ignore", ignore)):
        Image.fromarray(mask).save(root / "masks" / f"astro_{name}.png")
    (root / "manifest.json").write_text(json.dumps([{"stem": "astro"}]))
    return root


def test_scores_saves_and_draws_each_photo(tmp_path):
    folder = labelled_folder(tmp_path / "set")
    saved, overlays = tmp_path / "saved", tmp_path / "overlays"
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "quality.py"), "--data", str(folder),
         "--engine", "parser", "--save-dir", str(saved), "--overlays", str(overlays)],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    line = next(x for x in done.stdout.splitlines() if x.startswith("astro "))
    assert "lower absent" in line
    upper_iou = float(line.split("upper ")[1].split()[0])
    assert 0.2 < upper_iou <= 1.0  # the reference is a rough box around the suit
    assert "mean IoU upper (tight)" in done.stdout
    photo = Image.open(folder / "images" / "astro.jpg")
    for part in ("upper", "lower"):
        mask = np.asarray(Image.open(saved / f"astro_{part}.png"))
        assert mask.shape == (photo.height, photo.width) and set(np.unique(mask)) <= {0, 255}
    assert (saved / "astro_overlay.png").exists()
    side_by_side = Image.open(overlays / "astro.png")
    assert side_by_side.size == (3 * photo.width, photo.height)
