"""The state outbox: the latest ``state`` message of each job, kept (in memory
and on disk) until the broker has very likely seen it.

The wire protocol has no acknowledgement for states, so an entry is retired
only once it was sent on the current connection and the broker then kept
talking for ``hold_s`` (its peer expiry): had it died after our send, we
would have noticed the silence, reconnected, and re-sent every entry. The
broker treats states idempotently, so re-sending is always safe.

Entries live in ``<state_dir>/uploader/outbox/<job_id>`` so states survive an
uploader restart, and so ``python -m uploader redrive`` (another process)
can hand states to a running service, which picks them up on :meth:`rescan`.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path

from common.files import atomic_write, private_dir
from common.ids import is_valid_id
from common.wire import FINAL_STATES, encode, pack, unpack

from .records import file_lock


@dataclass
class _Entry:
    fields: dict
    written_ns: int
    sent_epoch: int | None = None
    sent_at: float = 0.0


class Outbox:
    """Latest state per job; thread-safe, shared with other processes via files."""

    def __init__(self, directory: Path):
        self.dir = private_dir(Path(directory))
        self._lock_path = self.dir.parent / "outbox.lock"
        self._entries: dict[str, _Entry] = {}
        self._lock = threading.Lock()

    def put(self, job_id: str, state: str, reason: str | None = None,
            detail: str | None = None) -> None:
        """Record ``state`` as the job's latest; it is sent on the next :meth:`due`.
        Terminal states are written durably; ``uploading`` need not be."""
        if not is_valid_id(job_id):
            return  # cannot name a file after it; such jobs never get this far
        written_ns = time.time_ns()
        fields = {"job_id": job_id, "state": state, "reason": reason, "detail": detail,
                  "written_ns": written_ns}
        with self._lock, file_lock(self._lock_path):
            atomic_write(self.dir / job_id, pack(fields), sync=state in FINAL_STATES)
            self._entries[job_id] = _Entry(fields, written_ns)

    def rescan(self) -> int:
        """Load entries other processes wrote (or rewrote); returns how many."""
        loaded = 0
        for path in self.dir.iterdir():
            if not is_valid_id(path.name):
                continue
            try:
                fields = unpack(path.read_bytes())
            except (FileNotFoundError, ValueError):
                continue
            if not isinstance(fields, dict) or fields.get("job_id") != path.name:
                continue  # not ours (or damaged): leave it for a person to look at
            version = fields.get("written_ns", 0)
            if not isinstance(version, int):
                continue  # damaged: leave it for a person to look at
            with self._lock:
                known = self._entries.get(path.name)
                # newer only: a put() between our read and the lock must not be undone
                if known is None or version > known.written_ns:
                    self._entries[path.name] = _Entry(fields, version)
                    loaded += 1
        return loaded

    def due(self, epoch: int) -> list[tuple[str, int, bytes]]:
        """``(job_id, version, frame)`` for every entry not yet sent on connection
        ``epoch``; pass each sent one to :meth:`mark_sent`."""
        with self._lock:
            return [(job_id, e.written_ns, _frame(e.fields))
                    for job_id, e in self._entries.items() if e.sent_epoch != epoch]

    def mark_sent(self, job_id: str, version: int, epoch: int, now: float) -> None:
        """Note that version ``version`` of the job's state went out on ``epoch``."""
        with self._lock:
            entry = self._entries.get(job_id)
            if entry is not None and entry.written_ns == version:
                entry.sent_epoch, entry.sent_at = epoch, now

    def retire(self, epoch: int, heard_at: float, hold_s: float) -> int:
        """Drop entries sent on ``epoch`` when the broker was heard ``hold_s``
        after the send; returns how many were dropped."""
        with self._lock:
            done = [(job_id, e.written_ns) for job_id, e in self._entries.items()
                    if e.sent_epoch == epoch and heard_at - e.sent_at >= hold_s]
        for job_id, version in done:
            with self._lock, file_lock(self._lock_path):
                if self._entries.get(job_id, _Entry({}, -1)).written_ns != version:
                    continue  # rewritten meanwhile: the new state still has to go
                path = self.dir / job_id
                try:
                    if unpack(path.read_bytes()).get("written_ns") == version:
                        path.unlink()
                except (FileNotFoundError, ValueError):
                    pass
                del self._entries[job_id]
        return len(done)

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)


def _frame(fields: dict) -> bytes:
    return encode("state", job_id=fields["job_id"], state=fields["state"],
                  reason=fields.get("reason"), detail=fields.get("detail"))
