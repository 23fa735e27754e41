"""Fixtures every test gets."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def _root_logging_restored() -> Iterator[None]:
    """Put the root logger back after each test.

    Code under test may call ``common.logs.setup_logging`` in this process (the CLI, the
    log tests); its handler writes to the stream of that moment, which pytest closes
    after the test, and threads of later tests (receivers, worker loops) would then log
    into a closed file.
    """
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        yield
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
