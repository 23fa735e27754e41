"""bench/one_piece_share.py and bench/train_groups.py: the one-piece checks
the development set cannot make (it leaves dress pixels unscored)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage import data

from segworker.parser.classes import LOWER_ID, ONE_PIECE_ID, UPPER_ID

ROOT = Path(__file__).resolve().parents[2]


def bench_module(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "bench" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_bench(name: str, *args: str) -> str:
    done = subprocess.run([sys.executable, str(ROOT / "bench" / f"{name}.py"), *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_the_share_counts_one_piece_among_garment_pixels_only():
    share = bench_module("one_piece_share").one_piece_share
    seg = np.zeros((10, 10), np.uint8)
    assert share(seg) is None
    seg[:2] = UPPER_ID      # 20 garment pixels
    seg[2:4] = LOWER_ID     # 20
    seg[4:5] = ONE_PIECE_ID  # 10
    seg[5:] = 4             # skin: not a garment
    assert share(seg) == pytest.approx(10 / 50)


def test_the_summary_names_two_piece_photos_called_one_piece_and_every_dress():
    summary = bench_module("one_piece_share").summary
    found = {"a": 0.0, "b": 0.004, "c": 0.31, "d": 0.9, "e": "no_person", "f": None}
    line = summary(found, {"d"})
    assert line == "two-piece photos above 0.00: c 0.31 | one-piece photos: d 0.90"
    assert summary({"a": 0.0}, set()) == "two-piece photos above 0.00: none | one-piece photos: none listed"


def test_the_look_photos_list_applies_only_to_the_look_photos(tmp_path):
    module = bench_module("one_piece_share")
    listed = json.loads(module.LOOK_ONE_PIECE.read_text())["one_piece"]
    assert module.one_piece_stems(None, ["astro"]) == set()
    assert module.one_piece_stems(None, [*listed, "other"]) == set(listed)
    own = tmp_path / "mine.json"
    own.write_text(json.dumps(["astro"]))
    assert module.one_piece_stems(str(own), ["astro"]) == {"astro"}


def test_the_share_of_each_photo_for_each_weights_file(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.fromarray(data.astronaut()).save(photos / "astro.jpg", quality=90)
    Image.fromarray(np.full((200, 150, 3), 128, np.uint8)).save(photos / "grey.png")
    listed = tmp_path / "one_piece.json"
    listed.write_text(json.dumps({"one_piece": ["astro"]}))
    committed = str(ROOT / "segworker" / "parser" / "parser.pt")
    out = run_bench("one_piece_share", "--photos", str(photos), "--one-piece", str(listed),
                    "--weights", committed, committed)
    assert out.count(f"weights: {committed}") == 2
    astro = [line.split() for line in out.splitlines() if line.strip().startswith("astro ")]
    assert len(astro) == 2 and astro[0] == astro[1]  # the same file twice: the same share
    assert 0.0 <= float(astro[0][1]) <= 1.0 and astro[0][2] == "(one-piece)"
    assert "grey  no_person" in out  # nobody there: said, not scored
    assert f"one-piece photos: astro {float(astro[0][1]):.2f}" in out


def label_photo(folder: Path, stem: str, regions: dict[int, tuple[slice, slice]]) -> None:
    """The astronaut with a CCP-59 label map of the given ``{ccp id: region}``."""
    rgb = data.astronaut()
    labels = np.zeros(rgb.shape[:2], np.uint8)
    for ccp_id, region in regions.items():
        labels[region] = ccp_id
    Image.fromarray(rgb).save(folder / "images" / f"{stem}.jpg", quality=90)
    Image.fromarray(labels).save(folder / "labels" / f"{stem}.png")


def test_training_photos_are_grouped_and_scored_by_kind_of_outfit(tmp_path):
    folder = tmp_path / "train"
    (folder / "images").mkdir(parents=True)
    (folder / "labels").mkdir()
    body, legs = (slice(300, 512), slice(0, 260)), (slice(460, 512), slice(0, 260))
    label_photo(folder, "a_suit", {51: body})                        # t-shirt: two-piece
    label_photo(folder, "b_dress", {14: body})                       # a dress alone
    label_photo(folder, "c_layer", {54: (slice(300, 460), slice(0, 260)), 14: legs})  # dress under a top
    label_photo(folder, "d_jeans", {51: (slice(300, 460), slice(0, 260)), 25: legs})
    out = run_bench("train_groups", "--data", str(folder), "--every", "1",
                    "--cache", str(tmp_path / "cache"))
    assert "photos: 4 (one in 1 of" in out
    [line] = [x for x in out.splitlines() if x.endswith("}")]
    groups = json.loads(line.split(" ", 1)[1])
    assert list(groups) == ["two_piece", "plain_dress", "layered"]
    assert [groups[g]["n"] for g in groups] == [2, 1, 1]
    assert all(0.0 <= v <= 1.0 for g in groups.values() for k, v in g.items() if k != "n")
    # the suit is most of the upper mask: the committed weights find it
    assert groups["two_piece"]["upper"] > 0.2
    assert "lower" in groups["plain_dress"]  # a dress is in both masks' references


def test_outfit_groups_follow_the_training_split():
    group = bench_module("train_groups").outfit_group
    top_only = np.full((10, 4), UPPER_ID, np.uint8)
    assert group(top_only) == ("two_piece", top_only)
    dress = np.zeros((10, 4), np.uint8)
    dress[2:9] = ONE_PIECE_ID
    kind, ref = group(dress)
    assert kind == "plain_dress" and ref is dress
    layered = dress.copy()
    layered[2:6] = UPPER_ID  # a top over the dress's upper half
    kind, ref = group(layered)
    assert kind == "layered" and not (ref == ONE_PIECE_ID).any() and (ref == LOWER_ID).any()
