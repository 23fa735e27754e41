"""Structured logging: one JSON object per line, one line per event.

Every event has ``ts``, ``level``, ``proc`` and ``event``; job events carry
``job_id``. Secrets registered with :func:`register_secret` are replaced by
``***`` in every line, whatever field or exception text they end up in.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

_SECRETS: set[str] = set()
_PROC = "?"


def register_secret(secret: str | None) -> None:
    """Never let ``secret`` reach a log line (short strings are ignored)."""
    if secret and len(secret) >= 4:
        _SECRETS.add(secret)
        # log lines are JSON: a secret holding a quote, a backslash or a control
        # character appears there escaped, so the escaped form is redacted as well
        escaped = json.dumps(secret, ensure_ascii=False)[1:-1]
        if escaped != secret:
            _SECRETS.add(escaped)


def redact(text: str) -> str:
    """``text`` with every registered secret replaced by ``***``."""
    for secret in _SECRETS:
        if secret in text:
            text = text.replace(secret, "***")
    return text


class JsonFormatter(logging.Formatter):
    """Formats records made by :func:`event` (or plain ones) as one JSON line."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "proc": _PROC,
            "event": getattr(record, "event", None) or record.getMessage(),
        }
        entry.update(getattr(record, "fields", {}))
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return redact(json.dumps(entry, default=str, ensure_ascii=False))


def setup_logging(proc: str, level: str = "INFO", stream: Any = None) -> None:
    """Send this process's logs, as JSON lines, to ``stream`` (stderr by default)."""
    global _PROC
    _PROC = proc
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.Formatter.converter = time.gmtime


def event(logger: logging.Logger, name: str, level: int = logging.INFO,
          exc_info: bool = False, **fields: Any) -> None:
    """Log event ``name`` with structured ``fields`` (``job_id=...`` etc.)."""
    if logger.isEnabledFor(level):
        logger.log(level, name, extra={"event": name, "fields": fields}, exc_info=exc_info)
