"""Who is connected right now: workers and the uploader (live state, never journalled).

Workers are known by their WorkerInfo ``id`` (``hostname-pid-index``), not by
their ZeroMQ routing id: a worker that re-creates its socket (Paranoid Pirate
reconnect) arrives with a new routing id but is still the same process, still
holding the same job, so its result is still accepted.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from common.histogram import valid_snapshot
from common.wire import UPLOADER_COUNTERS

#: WorkerInfo fields the broker keeps (anything else a worker sends is dropped).
INFO_FIELDS = ("id", "host", "pid", "index", "engine", "model_loaded", "device",
               "inline_images", "busy", "job_id",
               "precision", "backend", "precision_because", "backend_because")

#: Longest accepted worker id, in characters.
MAX_WORKER_ID = 200


def clean_info(info: Any) -> dict[str, Any] | None:
    """The usable part of a WorkerInfo map, or None when it has no valid ``id``."""
    if not isinstance(info, dict):
        return None
    name = info.get("id")
    if not isinstance(name, str) or not 0 < len(name) <= MAX_WORKER_ID:
        return None
    return {k: info[k] for k in INFO_FIELDS
            if k in info and isinstance(info[k], (str, int, float, bool, type(None)))}


@dataclass
class WorkerEntry:
    """One connected worker."""

    name: str
    peer: bytes
    info: dict[str, Any]
    last_seen: float
    job_id: str | None = None       #: the job it holds (the broker expects its result)
    deadline: float | None = None   #: when the held job overruns ``queue.job_deadline_s``
    busy: bool = True               #: not asking for work (maybe still on a job it lost)
    jobs_done: int = 0
    jobs_failed: int = 0

    @property
    def inline_images(self) -> bool:
        return self.info.get("inline_images") is True

    def stats(self, now: float) -> dict[str, Any]:
        """The ``per_worker`` entry of the broker stats."""
        return {"jobs_done": self.jobs_done, "jobs_failed": self.jobs_failed,
                "busy": self.busy, "job_id": self.job_id, "engine": self.info.get("engine"),
                "model_loaded": self.info.get("model_loaded") is True,
                **{k: self.info[k] for k in ("precision", "backend", "precision_because",
                                             "backend_because") if k in self.info},
                "host": self.info.get("host"), "pid": self.info.get("pid"),
                "last_seen_age_s": round(max(0.0, now - self.last_seen), 3)}


@dataclass
class WorkerRegistry:
    """Connected workers, and the idle ones in the order they became idle."""

    by_name: dict[str, WorkerEntry] = field(default_factory=dict)
    names: dict[bytes, str] = field(default_factory=dict)   #: routing id -> worker name
    idle: deque[str] = field(default_factory=deque)

    def seen(self, peer: bytes, info: dict[str, Any], now: float) -> tuple[WorkerEntry, bool]:
        """Record a ``ready``/``heartbeat``; returns the entry and whether it is new.

        A known worker arriving from a new routing id takes that id over.
        """
        entry = self.by_name.get(info["id"])
        if entry is None:
            entry = WorkerEntry(name=info["id"], peer=peer, info=info, last_seen=now)
            self.by_name[entry.name] = entry
            self.names[peer] = entry.name
            return entry, True
        if entry.peer != peer:
            self.names.pop(entry.peer, None)
            entry.peer = peer
            self.names[peer] = entry.name
        entry.info, entry.last_seen = info, now
        return entry, False

    def lookup(self, peer: bytes) -> WorkerEntry | None:
        name = self.names.get(peer)
        return None if name is None else self.by_name.get(name)

    def mark_idle(self, entry: WorkerEntry) -> None:
        entry.busy = False
        if entry.name not in self.idle:
            self.idle.append(entry.name)

    def take_idle(self) -> WorkerEntry | None:
        """The worker idle the longest (marked busy), or None."""
        while self.idle:
            entry = self.by_name.get(self.idle.popleft())
            if entry is not None and not entry.busy:
                entry.busy = True
                return entry
        return None

    def remove(self, entry: WorkerEntry) -> None:
        self.by_name.pop(entry.name, None)
        self.names.pop(entry.peer, None)
        if entry.name in self.idle:
            self.idle.remove(entry.name)

    def silent_since(self, cutoff: float) -> list[WorkerEntry]:
        """Workers not heard from since ``cutoff``."""
        return [w for w in self.by_name.values() if w.last_seen < cutoff]

    def all(self) -> list[WorkerEntry]:
        return list(self.by_name.values())


@dataclass
class UploaderEntry:
    """The connected uploader (at most one; a newer one replaces it)."""

    peer: bytes
    last_seen: float
    counters: dict[str, int] = field(default_factory=dict)
    timings: dict[str, dict] = field(default_factory=dict)   #: name -> histogram snapshot
    spool: dict[str, int] = field(default_factory=dict)      #: depth, dead

    def update(self, counters: Any, now: float, timings: Any = None, spool: Any = None) -> None:
        self.last_seen = now
        if isinstance(counters, dict):
            self.counters = {k: v for k, v in counters.items()
                             if k in UPLOADER_COUNTERS and _count(v)}
        if isinstance(timings, dict):
            self.timings = {k: v for k, v in timings.items()
                            if k == "upload" and valid_snapshot(v)}
        if isinstance(spool, dict):
            self.spool = {k: v for k, v in spool.items() if k in ("depth", "dead") and _count(v)}


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0
