"""start_process: the configuration error every process prints, and its None."""

from __future__ import annotations

import pytest

from common.config import ConfigError
from common.startup import start_process


@pytest.fixture(autouse=True)
def _default_config(monkeypatch):
    """The repository's config.yaml, whatever the calling shell points at."""
    monkeypatch.delenv("SCHP_CONFIG_PATH", raising=False)


def test_bad_setting_prints_one_line_and_returns_none(monkeypatch, capsys):
    monkeypatch.setenv("PORT", "not-a-port")
    assert start_process("demo") is None
    err = capsys.readouterr().err
    assert err.startswith("demo: configuration error: server.port (PORT)")
    assert err.count("\n") == 1 and "Traceback" not in err


def test_failed_check_is_reported_the_same_way(capsys):
    def refuse(settings):
        raise ConfigError("NEEDED_THING is not set")

    assert start_process("demo", refuse) is None
    assert capsys.readouterr().err == "demo: configuration error: NEEDED_THING is not set\n"
