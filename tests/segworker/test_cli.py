"""python -m segworker.cli, run as a user would (a subprocess per case)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage import data

ROOT = Path(__file__).resolve().parents[2]


def run_cli(*args: str, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items()
             if k not in ("SCHP_WEIGHTS", "SEGMENTATION_ENGINE", "SCHP_CONFIG_PATH")}
    return subprocess.run([sys.executable, "-m", "segworker.cli", *args], cwd=ROOT,
                          env={**clean, **env}, capture_output=True, text=True, timeout=180)


@pytest.fixture(scope="module")
def astronaut_png(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("photos") / "astronaut.png"
    Image.fromarray(data.astronaut()).save(path)
    return path


@pytest.fixture(scope="module")
def astronaut_run(astronaut_png, tmp_path_factory):
    out = tmp_path_factory.mktemp("masks")
    return run_cli(str(astronaut_png), "--out", str(out), "--seg-map"), out


def test_writes_both_masks_and_the_overlay_at_the_photo_size(astronaut_run):
    done, out = astronaut_run
    assert done.returncode == 0, done.stderr[-2000:]
    upper = np.asarray(Image.open(out / "upper_body_mask.png"))
    lower = np.asarray(Image.open(out / "lower_body_mask.png"))
    for mask in (upper, lower):
        assert mask.shape == (512, 512) and mask.dtype == np.uint8
        assert set(np.unique(mask)) <= {0, 255}
    assert (upper[330:480, 150:330] == 255).mean() > 0.8     # the suit's torso
    assert (lower == 255).mean() < 0.05
    overlay = Image.open(out / "overlay.png")
    assert overlay.mode == "RGB" and overlay.size == (512, 512)


def test_prints_the_engine_and_the_time_of_each_stage(astronaut_run):
    done, _ = astronaut_run
    assert "engine: parser (SEGMENTATION_ENGINE=auto and no SCHP weights configured)" in done.stdout
    timings = re.search(r"^timings_ms: (.*)$", done.stdout, re.MULTILINE)
    assert timings, done.stdout
    stages = dict(re.findall(r"(\w+)=([\d.]+)", timings.group(1)))
    assert {"decode", "engine_load", "person", "forward", "refine", "encode", "total"} <= set(stages)


def test_the_parser_writes_its_class_map_as_seg_map(astronaut_run):
    _done, out = astronaut_run
    seg_map = Image.open(out / "seg_map.png")
    assert seg_map.mode == "P" and seg_map.size == (512, 512)
    assert set(np.unique(np.asarray(seg_map))) <= set(range(8))


def test_several_photos_each_get_a_folder_and_one_engine_load(astronaut_png, tmp_path):
    second = tmp_path / "second.png"
    Image.open(astronaut_png).transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(second)
    done = run_cli(str(astronaut_png), str(second), "--out", str(tmp_path / "out"))
    assert done.returncode == 0, done.stderr[-2000:]
    for stem in ("astronaut", "second"):
        assert (tmp_path / "out" / stem / "upper_body_mask.png").exists()
    assert done.stdout.count("engine: parser") == 1
    loads = re.findall(r"engine_load=([\d.]+)", done.stdout)
    assert len(loads) == 2 and float(loads[1]) == 0.0


def test_no_person_exits_3_with_one_line(tmp_path):
    photo = tmp_path / "coffee.png"
    Image.fromarray(data.coffee()).save(photo)
    done = run_cli(str(photo), "--out", str(tmp_path / "out"))
    assert done.returncode == 3
    assert "segworker.cli: no person:" in done.stderr
    assert not (tmp_path / "out" / "upper_body_mask.png").exists()


def test_a_file_that_is_not_a_photo_exits_2(tmp_path):
    bogus = tmp_path / "notes.png"
    bogus.write_text("not an image")
    done = run_cli(str(bogus), "--out", str(tmp_path / "out"))
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].startswith("segworker.cli: bad photo:")


def test_engine_that_cannot_start_exits_4(astronaut_png, tmp_path):
    done = run_cli(str(astronaut_png), "--out", str(tmp_path), SEGMENTATION_ENGINE="schp")
    assert done.returncode == 4
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("segworker.cli: engine cannot start:") and "SCHP_WEIGHTS" in last


def test_bad_configuration_exits_5(astronaut_png, tmp_path):
    done = run_cli(str(astronaut_png), "--out", str(tmp_path), SEGMENTATION_ENGINE="fastest")
    assert done.returncode == 5
    assert "SEGMENTATION_ENGINE" in done.stderr


def test_an_output_folder_that_cannot_be_written_exits_2_with_one_line(tmp_path, capsys):
    # Used to end in a traceback (exit 1) after the whole segmentation had run.
    import io as _io

    from common.config import load_settings
    from segworker import cli
    from segworker.engine import Engine, Segmentation

    class Fake(Engine):
        name = "fake"

        def segment(self, rgb):
            mask = np.zeros(rgb.shape[:2], bool)
            mask[8:24, 8:24] = True
            return Segmentation(upper=mask, lower=mask.copy())

    buf = _io.BytesIO()
    Image.new("RGB", (32, 32), (90, 90, 90)).save(buf, "PNG")
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    photo = tmp_path / "photo.png"
    photo.write_bytes(buf.getvalue())
    loader = cli._EngineLoader(load_settings(environ={}))
    loader.engine = Fake()
    code = cli._run(load_settings(environ={}), loader, photo, blocker / "out", False)
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("segworker.cli: cannot write"), err


def test_the_cli_says_which_precision_and_backend_run_and_why(tmp_path, monkeypatch, capsys):
    from segworker import cli, engines
    from segworker.engine import Engine, Segmentation

    class Compiled(Engine):
        name = "schp"
        selected_because = "SEGMENTATION_ENGINE=schp"

        def segment(self, rgb):
            mask = np.zeros(rgb.shape[:2], bool)
            mask[8:24, 8:24] = True
            return Segmentation(upper=mask, lower=mask.copy())

        def describe(self):
            return {"engine": "schp", "precision": "bf16", "backend": "openvino",
                    "precision_because": "SCHP_PRECISION=auto and the CPU has bf16 matrix units",
                    "backend_because": "SCHP_BACKEND=auto and the device is cpu"}

    monkeypatch.setattr(engines, "build_engine", lambda settings: Compiled())
    photo = tmp_path / "grey.png"
    Image.new("RGB", (32, 32), (90, 90, 90)).save(photo)
    assert cli.main([str(photo), "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "precision: bf16 (SCHP_PRECISION=auto and the CPU has bf16 matrix units)" in out
    assert "backend: openvino (SCHP_BACKEND=auto and the device is cpu)" in out
