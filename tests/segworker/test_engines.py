"""Engine selection: SEGMENTATION_ENGINE = auto | parser | schp | pose, and SCHP_WEIGHTS."""

from __future__ import annotations

import dataclasses
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from common.config import ConfigError, load_settings, validate
from segworker.engine import EngineLoadError
from segworker.engines import build_engine

ROOT = Path(__file__).resolve().parents[2]


def settings(**env: str):
    # Eager: selection is what these tests are about; the compiled backend has its own.
    return load_settings(environ={"SCHP_DEVICE": "cpu", "SCHP_BACKEND": "eager", **env})


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """A random-weight SCHP checkpoint (ATR) in the official 2020 file format."""
    from segworker.schp.network import SchpNet
    torch.manual_seed(0)
    model = SchpNet(18)
    state = {"module." + k: v for k, v in model.state_dict().items()
             if not k.endswith("num_batches_tracked")}
    path = tmp_path_factory.mktemp("schp") / "random-atr.pth"
    torch.save({"state_dict": state}, path)
    del model, state
    yield path
    path.unlink()  # 267 MB: do not leave it in pytest's kept temp dirs


@pytest.fixture
def build():
    """build_engine, closing MediaPipe-based engines afterwards."""
    built = []

    def _build(s):
        engine = build_engine(s)
        built.append(engine)
        return engine
    yield _build
    for engine in built:
        if hasattr(engine, "close"):
            engine.close()


def test_auto_without_weights_selects_the_parser(build, caplog):
    caplog.set_level(logging.INFO, logger="segworker.engines")
    engine = build(settings())
    assert engine.name == "parser"
    assert engine.selected_because == "SEGMENTATION_ENGINE=auto and no SCHP weights configured"
    assert engine.describe()["selected_because"] == engine.selected_because
    logged = [r for r in caplog.records if getattr(r, "event", "") == "engine_selected"]
    assert logged and logged[0].fields["engine"] == "parser"
    assert logged[0].fields["selected_because"] == engine.selected_because


def test_the_parser_when_asked_does_not_touch_the_schp_weights(build, tmp_path):
    engine = build(settings(SEGMENTATION_ENGINE="parser",
                            SCHP_WEIGHTS=str(tmp_path / "missing.pth")))
    assert engine.name == "parser" and engine.selected_because == "SEGMENTATION_ENGINE=parser"


def test_a_damaged_parser_file_is_a_startup_error_naming_it(tmp_path):
    from segworker.parser import weights as parser_weights
    damaged = tmp_path / "parser.pt"
    damaged.write_bytes(parser_weights.BUNDLED.read_bytes()[:100_000])
    (tmp_path / "parser.pt.sha256").write_text(
        (parser_weights.BUNDLED.parent / "parser.pt.sha256").read_text())
    with pytest.raises(EngineLoadError) as err:
        build_engine(settings(PARSER_WEIGHTS=str(damaged)))
    message = str(err.value)
    assert "parser engine was selected because SEGMENTATION_ENGINE=auto" in message
    assert str(damaged) in message and "SHA-256 differs" in message
    assert "\n" not in message


def test_auto_with_valid_weights_selects_schp(build, weights):
    engine = build(settings(SCHP_WEIGHTS=str(weights)))
    assert engine.name == "schp"
    assert engine.selected_because == (f"SEGMENTATION_ENGINE=auto and SCHP weights are "
                                       f"configured ({weights})")
    assert engine.describe()["dataset"] == "atr"


def test_schp_when_asked_with_valid_weights(build, weights, caplog):
    caplog.set_level(logging.INFO, logger="segworker.engines")
    engine = build(settings(SEGMENTATION_ENGINE="schp", SCHP_WEIGHTS=str(weights),
                            SCHP_PRECISION="fp32"))
    assert engine.name == "schp" and engine.selected_because == "SEGMENTATION_ENGINE=schp"
    logged = [r.fields for r in caplog.records if getattr(r, "event", "") == "engine_selected"]
    assert logged[0]["precision"] == "fp32" and logged[0]["backend"] == "eager"
    assert logged[0]["precision_because"] == "SCHP_PRECISION=fp32"
    assert logged[0]["backend_because"] == "SCHP_BACKEND=eager"


def test_auto_with_broken_weights_is_a_startup_error_not_a_fallback(tmp_path):
    broken = tmp_path / "broken.pth"
    broken.write_bytes(b"not a checkpoint at all" * 100)
    with pytest.raises(EngineLoadError) as err:
        build_engine(settings(SCHP_WEIGHTS=str(broken)))
    message = str(err.value)
    assert "SCHP engine was selected because SEGMENTATION_ENGINE=auto" in message
    assert str(broken) in message
    assert "unset it" in message                    # says how to get the parser instead


def test_auto_with_a_missing_weights_file_is_a_startup_error(tmp_path):
    with pytest.raises(EngineLoadError, match="missing.pth"):
        build_engine(settings(SCHP_WEIGHTS=str(tmp_path / "missing.pth")))


def test_schp_without_weights_says_what_to_set():
    with pytest.raises(EngineLoadError, match="SCHP_WEIGHTS"):
        build_engine(settings(SEGMENTATION_ENGINE="schp"))


def test_the_parser_path_does_not_load_schp():
    code = ("import sys\n"
            "from common.config import load_settings\n"
            "from segworker.engines import build_engine\n"
            "engine = build_engine(load_settings(environ={}))\n"
            "assert engine.name == 'parser'\n"
            "loaded = [m for m in ('segworker.schp',) if m in sys.modules]\n"
            "print('LOADED', loaded)\n")
    env = {k: v for k, v in os.environ.items() if k not in ("SCHP_WEIGHTS", "SEGMENTATION_ENGINE")}
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "LOADED []" in done.stdout


def test_an_unknown_engine_name_is_a_startup_error():
    with pytest.raises(ConfigError, match=r"segmentation.engine \(SEGMENTATION_ENGINE\): must "
                       r"be one of auto, parser, schp, pose, got 'fast'"):
        settings(SEGMENTATION_ENGINE="fast")
    s = settings()
    s = dataclasses.replace(s, segmentation=dataclasses.replace(s.segmentation, engine="fast"))
    with pytest.raises(ConfigError, match="segmentation.engine"):  # however the settings are made
        validate(s)


def test_pose_when_asked_does_not_touch_the_weights(build, tmp_path):
    engine = build(settings(SEGMENTATION_ENGINE="pose", SCHP_WEIGHTS=str(tmp_path / "missing.pth")))
    assert engine.name == "pose" and engine.selected_because == "SEGMENTATION_ENGINE=pose"
