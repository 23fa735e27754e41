"""The broker journal: an append-only file of length-prefixed msgpack records.

File: ``<STATE_DIR>/broker/journal.log`` (directory 0700, file 0600). Each
record is framed as::

    uint32 big-endian payload length | uint32 big-endian CRC-32 of payload | msgpack payload

Every :meth:`Journal.append` writes one frame and fsyncs before returning, so
a record the broker acted on is on disk. With ``group_commit`` (the broker's
loop), :meth:`Journal.append` only writes, and :meth:`Journal.sync` fsyncs every
record written since the last sync at once: the loop calls it before it sends
anything (a 202's ``accepted`` included) or deletes a photo, so what it tells
others is as durable as before, at one fsync per loop turn instead of one per
record. Replay reads frames in order and stops
at the first incomplete or corrupt one (a crash mid-write leaves at most one
torn frame at the end); that tail is logged and cut off.

Compaction replaces the whole file with one ``snapshot`` record (written to a
temporary file, fsynced, renamed over the journal, directory fsynced), so a
crash at any moment leaves either the old journal or the new one. It runs at
start-up and whenever the journal grows past :data:`COMPACT_MIN_BYTES` and
twice the last snapshot's size.
"""

from __future__ import annotations

import logging
import os
import struct
import time
import zlib
from pathlib import Path
from typing import Any

from broker.jobs import JobBook
from common import wire
from common.files import DIR_MODE, FILE_MODE, fsync_dir, private_dir, replace_file, write_all
from common.logs import event

#: Frame header: payload length and CRC-32, big-endian uint32 each (8 bytes).
HEADER = struct.Struct(">II")

#: Largest record replay believes in, in bytes; a larger length is a corrupt header.
MAX_RECORD_BYTES = 256 * 1024 * 1024

#: Appended bytes after which compaction is due (at least; see the module docstring).
COMPACT_MIN_BYTES = 8 * 1024 * 1024

#: Seconds before a failed compaction (disk full, read-only) is tried again, so the
#: broker loop does not rebuild and rewrite the snapshot on every turn meanwhile.
COMPACT_RETRY_S = 30.0

#: Journal file name inside the journal directory.
JOURNAL_NAME = "journal.log"

log = logging.getLogger("broker.journal")


class JournalError(Exception):
    """The journal cannot be written (disk full, read-only file system, ...)."""


def frame(record: dict[str, Any]) -> bytes:
    """One record as it is stored on disk."""
    payload = wire.pack(record)
    return HEADER.pack(len(payload), zlib.crc32(payload)) + payload


def parse(data: bytes) -> tuple[list[dict[str, Any]], int, str | None]:
    """Records in ``data``, the offset where the good part ends, and what stopped
    the read early (None when every byte was a good record)."""
    records: list[dict[str, Any]] = []
    pos = 0
    while pos < len(data):
        if len(data) - pos < HEADER.size:
            return records, pos, "truncated header"
        length, crc = HEADER.unpack_from(data, pos)
        end = pos + HEADER.size + length
        if length == 0 or length > MAX_RECORD_BYTES:
            return records, pos, f"implausible record length {length}"
        if end > len(data):
            return records, pos, "truncated record"
        payload = data[pos + HEADER.size:end]
        if zlib.crc32(payload) != crc:
            return records, pos, "checksum mismatch"
        try:
            record = wire.unpack(payload)
        except wire.WireError as exc:
            return records, pos, f"undecodable record ({exc})"
        if isinstance(record, dict):
            records.append(record)
        pos = end
    return records, pos, None


class Journal:
    """The journal file: :meth:`open` (replay), :meth:`append`, :meth:`compact`."""

    def __init__(self, directory: Path, compact_min_bytes: int = COMPACT_MIN_BYTES,
                 group_commit: bool = False) -> None:
        self.directory = Path(directory)
        self.group_commit = group_commit
        self.unsynced = 0   #: records written since the last fsync (group commit only)
        self.records = self.fsyncs = 0   #: cumulative since open, for the broker's stats
        self.path = self.directory / JOURNAL_NAME
        self.compact_min_bytes = compact_min_bytes
        self._fd: int | None = None
        self.size = 0
        self._snapshot_bytes = 0
        self._since_snapshot = 0
        self._compact_not_before = 0.0   #: monotonic time; set after a failed compaction

    def open(self) -> list[dict[str, Any]]:
        """Create the directory if needed, read every good record, cut a torn tail,
        and open the file for appending. Raises :class:`JournalError`."""
        try:
            os.chmod(private_dir(self.directory), DIR_MODE)
            for stale in self.directory.glob(f".{self.path.name}.*.tmp"):
                stale.unlink()  # a compaction cut short by a crash; the journal is intact
            data = self.path.read_bytes() if self.path.exists() else b""
            records, good_end, problem = parse(data)
            if problem is not None:
                event(log, "journal_torn_tail", logging.WARNING, path=str(self.path),
                      offset=good_end, dropped_bytes=len(data) - good_end, problem=problem)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, FILE_MODE)
            os.fchmod(self._fd, FILE_MODE)
            if good_end < len(data):
                os.ftruncate(self._fd, good_end)
                os.fsync(self._fd)
        except OSError as exc:
            raise JournalError(f"journal {self.path}: {exc.strerror or exc}") from None
        self.size = self._since_snapshot = good_end
        return records

    def append(self, record: dict[str, Any]) -> None:
        """Write one record and fsync it (group commit: write only, see :meth:`sync`).
        Raises :class:`JournalError` (no partial record left)."""
        if self._fd is None:
            raise JournalError("journal is not open")
        data = frame(record)
        try:
            write_all(self._fd, data)
            if not self.group_commit:
                self._fsync()
        except OSError as exc:
            try:
                os.ftruncate(self._fd, self.size)
            except OSError:
                pass  # replay cuts a torn tail anyway
            raise JournalError(f"journal {self.path}: {exc.strerror or exc}") from None
        self.size += len(data)
        self._since_snapshot += len(data)
        self.records += 1
        if self.group_commit:
            self.unsynced += 1

    def sync(self) -> int:
        """fsync the records written since the last sync; returns how many there were.

        Raises :class:`JournalError`: then no one can tell which of them are on disk
        (after a failed fsync the kernel may have dropped the dirty pages), so the
        caller must not act on any of them (the broker stops; replay decides)."""
        if not self.unsynced:
            return 0
        count = self.unsynced
        try:
            self._fsync()
        except OSError as exc:
            raise JournalError(f"journal {self.path}: fsync failed: {exc.strerror or exc}") from None
        self.unsynced = 0
        return count

    def _fsync(self) -> None:
        if self._fd is None:
            raise JournalError("journal is not open")
        os.fsync(self._fd)
        self.fsyncs += 1

    def stats(self) -> dict[str, Any]:
        """Figures for the broker's ``stats`` reply (cumulative since the broker started)."""
        return {"records": self.records, "fsyncs": self.fsyncs, "bytes": self.size,
                "group_commit": self.group_commit}

    @property
    def needs_compaction(self) -> bool:
        return (self._since_snapshot > max(self.compact_min_bytes, 2 * self._snapshot_bytes)
                and time.monotonic() >= self._compact_not_before)

    def compact(self, snapshot: dict[str, Any]) -> None:
        """Atomically replace the journal with the single record ``snapshot``."""
        data = frame(snapshot)
        try:
            replace_file(self.path, data)
        except OSError as exc:
            self._compact_not_before = time.monotonic() + COMPACT_RETRY_S
            raise JournalError(f"journal compaction {self.path}: {exc.strerror or exc}") from None
        # From here the new file is the journal: always re-open on it.
        if self._fd is not None:
            os.close(self._fd)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
        self.size = self._snapshot_bytes = len(data)
        self._since_snapshot = 0
        self.unsynced = 0   # the snapshot holds everything, fsynced
        try:
            fsync_dir(self.directory)
        except OSError as exc:
            event(log, "journal_dir_fsync_failed", logging.WARNING, error=str(exc))
        event(log, "journal_compacted", bytes=len(data), path=str(self.path))

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def restore_book(journal: Journal, remember_finished: int) -> tuple[JobBook, list[str]]:
    """Replay ``journal`` into a fresh book, put in-flight jobs back at the head
    of the queue, and compact. Returns the book and the recovered job ids.

    Records that cannot be applied are logged and skipped, except a snapshot
    (raises :class:`JournalError`: the broker refuses to start); a failed compaction
    is logged and the uncompacted journal is kept (replay is deterministic, so
    the next start recovers the same state).
    """
    book = JobBook(remember_finished=remember_finished)
    for number, record in enumerate(journal.open()):
        try:
            book.apply(record)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            if record.get("op") == "snapshot":  # skipping it would silently drop every job
                raise JournalError(f"journal {journal.path}: the snapshot cannot be read "
                                   f"({exc}); move the file away to start empty") from None
            event(log, "journal_record_skipped", logging.ERROR, number=number,
                  op=record.get("op"), job_id=record.get("job_id"), error=str(exc))
    recovered = book.recover()
    try:
        journal.compact(book.snapshot())
    except JournalError as exc:
        event(log, "journal_compaction_failed", logging.ERROR, error=str(exc))
    return book, recovered
