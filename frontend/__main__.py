"""``python -m frontend``: the HTTP API process.

Reads ``config.yaml`` and the environment (see common/config.py), logs JSON
lines to stderr, serves until SIGTERM. Exit status: 0 after a clean stop,
2 for a configuration error, 1 if the server cannot start (port in use, ...).
"""

from __future__ import annotations

import asyncio
import logging
import sys

from common.logs import event, register_secret
from common.startup import start_process
from frontend.lifecycle import serve

log = logging.getLogger("frontend")


def main() -> int:
    """Load settings, set up logging, serve until stopped; returns the exit status."""
    settings = start_process("frontend")
    if settings is None:
        return 2
    logging.captureWarnings(True)  # decoder warnings become JSON log lines, not raw stderr
    register_secret(settings.server.api_key)
    try:
        asyncio.run(serve(settings))
    except OSError as exc:
        where = f"{settings.server.host}:{settings.server.port} (HOST, PORT)"
        event(log, "frontend_start_failed", logging.ERROR,
              detail=f"cannot listen on {where}: {exc.strerror or exc}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
