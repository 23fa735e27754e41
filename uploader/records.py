"""Small persistent records beside the spool: the ledger of delivered jobs and
the delivery counters. Both are safe to use from several threads and from
the ``redrive`` command running beside the service (file locks).
"""

from __future__ import annotations

import fcntl
import json
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from common.files import FILE_MODE, atomic_write, fsync_dir, private_dir
from common.ids import is_valid_id
from common.wire import UPLOADER_COUNTERS as COUNTER_NAMES

#: Additions between two trims of the ledger, in jobs.
LEDGER_TRIM_EVERY = 100


def attempt_class(status: int | None) -> str:
    """The :data:`common.wire.ATTEMPT_CLASSES` entry of an attempt's HTTP status
    (None: no answer)."""
    if status is None or not 200 <= status < 600:
        return "error"
    return f"{status // 100}xx"


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (created 0600) for the block."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, FILE_MODE)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def try_lock(path: Path) -> int | None:
    """Take an exclusive ``flock`` on ``path`` without waiting: the open file
    descriptor (keep it open to hold the lock), or None when someone holds it.
    The kernel releases it when the process ends, however it ends."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, FILE_MODE)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


class Ledger:
    """Recently delivered job ids: one empty marker file per job under ``dir``.

    A marker is written (durably) before a delivered job's spool entry is
    removed, so a job is never uploaded twice across a crash. The oldest
    markers beyond ``keep`` (the setting ``queue.remember_finished``, as for the
    broker's finished jobs) are trimmed.
    """

    def __init__(self, directory: Path, keep: int):
        self.dir = private_dir(Path(directory))
        self.keep = keep
        self._adds = 0
        self._lock = threading.Lock()

    def __contains__(self, job_id: str) -> bool:
        return is_valid_id(job_id) and (self.dir / job_id).exists()

    def add(self, job_id: str) -> None:
        """Remember ``job_id`` as delivered (durable on return)."""
        if not is_valid_id(job_id):
            raise ValueError(f"invalid job_id {job_id[:80]!r}")
        fd = os.open(self.dir / job_id, os.O_WRONLY | os.O_CREAT, FILE_MODE)
        os.close(fd)
        fsync_dir(self.dir)
        with self._lock:
            self._adds += 1
            trim = self._adds % LEDGER_TRIM_EVERY == 0
        if trim:
            self.trim()

    def trim(self) -> int:
        """Forget the oldest ids beyond ``keep``; returns how many were dropped."""
        entries = []
        for child in self.dir.iterdir():
            try:
                entries.append((child.stat().st_mtime, child))
            except FileNotFoundError:
                continue
        excess = len(entries) - self.keep
        for _, child in sorted(entries)[:max(excess, 0)]:
            child.unlink(missing_ok=True)
        return max(excess, 0)


class Counters:
    """``delivered``, ``retried``, ``dead_lettered`` and ``attempts_<class>`` totals in a JSON file,
    updated under a file lock so the service and ``redrive`` can both count."""

    def __init__(self, path: Path):
        self.path = Path(path)
        private_dir(self.path.parent)
        self._lock_path = self.path.with_name(self.path.name + ".lock")

    def read(self) -> dict[str, int]:
        """The current totals (zeros when nothing was counted yet)."""
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (FileNotFoundError, ValueError):
            data = {}
        return {name: int(data.get(name, 0)) for name in COUNTER_NAMES}

    def bump(self, name: str, by: int = 1) -> dict[str, int]:
        """Add ``by`` to counter ``name``; returns the new totals."""
        if name not in COUNTER_NAMES:
            raise ValueError(f"unknown counter {name!r}")
        with file_lock(self._lock_path):
            totals = self.read()
            totals[name] += by
            atomic_write(self.path, json.dumps(totals).encode(), sync=False)
        return totals
