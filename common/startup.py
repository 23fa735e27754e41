"""The first steps of every process's ``main()``: settings, then JSON logging."""

from __future__ import annotations

import sys
from collections.abc import Callable

from common.config import ConfigError, Settings, load_settings
from common.logs import redact, setup_logging


def start_process(proc: str,
                  check: Callable[[Settings], None] | None = None) -> Settings | None:
    """Load the settings, run ``check`` on them, and set up logging as ``proc``.

    On a :class:`ConfigError` (from loading or from ``check``) print
    ``<proc>: configuration error: <message>`` to stderr, with registered
    secrets redacted, and return None: the caller exits with status 2.
    """
    try:
        settings = load_settings()
        if check is not None:
            check(settings)
    except ConfigError as exc:
        print(f"{proc}: configuration error: {redact(str(exc))}", file=sys.stderr)
        return None
    setup_logging(proc, settings.logging.level)
    return settings
