"""Structured logging: one JSON object per line, one line per event.

Every event has ``ts``, ``level``, ``proc`` and ``event``; job events carry
``job_id``. Secrets registered with :func:`register_secret` are replaced by
``***`` in every line, whatever field or exception text they end up in.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import re
import sys
import threading
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


#: What ``exc_info`` of :func:`event` takes (as :meth:`logging.Logger.log` does).
ExcInfo = bool | BaseException | tuple[Any, Any, Any]


def event(logger: logging.Logger, name: str, level: int = logging.INFO,
          exc_info: ExcInfo = False, **fields: Any) -> None:
    """Log event ``name`` with structured ``fields`` (``job_id=...`` etc.)."""
    if logger.isEnabledFor(level):
        logger.log(level, name, extra={"event": name, "fields": fields}, exc_info=exc_info)


#: A glog/absl line: ``W0000 00:00:1733.5  123 file.cc:114] message``.
_GLOG = re.compile(r"^([IWEF])\d{4} [\d:.]+\s+\d+ ([^\]]+)\] ?(.*)$")
#: A TFLite line: ``INFO: Created TensorFlow Lite XNNPACK delegate for CPU.``
_PREFIXED = re.compile(r"^(INFO|WARNING|ERROR|FATAL): ?(.*)$")
_LEVELS = {"I": logging.INFO, "W": logging.WARNING, "E": logging.ERROR, "F": logging.CRITICAL,
           "INFO": logging.INFO, "WARNING": logging.WARNING, "ERROR": logging.ERROR,
           "FATAL": logging.CRITICAL}
#: Seconds the exit hook waits for the last native lines to be logged.
_DRAIN_S = 1.0


def native_line(line: str) -> tuple[int, dict[str, Any]]:
    """``(level, fields)`` for one line a C/C++ library wrote to stderr."""
    if m := _GLOG.match(line):
        return _LEVELS[m[1]], {"source": m[2], "text": m[3]}
    if m := _PREFIXED.match(line):
        return _LEVELS[m[1]], {"text": m[2]}
    return logging.WARNING, {"text": line}


def wrap_native_stderr() -> None:
    """Make what native libraries (MediaPipe, TFLite, absl, torch) write to file
    descriptor 2 into ``native_log`` JSON lines, so every line of the log is JSON.

    Call after :func:`setup_logging`. File descriptor 2 becomes a pipe read by a
    thread; this process's own log lines go to a duplicate of the original
    stderr, so they never pass through the pipe. Python's own stderr writes are
    made JSON too: warnings become log records, an uncaught exception one
    ``uncaught_exception`` line with its traceback.
    """
    own = os.fdopen(os.dup(2), "w", buffering=1, encoding="utf-8", errors="replace")
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.StreamHandler):
            handler.setStream(own)
    logging.captureWarnings(True)
    sys.excepthook = _log_uncaught
    read_fd, write_fd = os.pipe()
    os.dup2(write_fd, 2)
    os.close(write_fd)
    pump = threading.Thread(target=_pump, args=(read_fd,), name="native-stderr", daemon=True)
    pump.start()
    atexit.register(_restore, own.fileno(), pump)


def _log_uncaught(kind: type, value: BaseException, tb: Any) -> None:
    event(logging.getLogger("native"), "uncaught_exception", logging.CRITICAL,
          exc_info=(kind, value, tb))


def _pump(read_fd: int) -> None:
    log = logging.getLogger("native")
    with os.fdopen(read_fd, "rb") as pipe:
        for raw in pipe:
            line = raw.decode("utf-8", "replace").rstrip()
            if line:
                level, fields = native_line(line)
                event(log, "native_log", level, **fields)


def _restore(own_fd: int, pump: threading.Thread) -> None:
    """At exit: put the real stderr back (closing the pipe) and log what is left."""
    try:
        os.dup2(own_fd, 2)
    except OSError:
        return
    pump.join(_DRAIN_S)
