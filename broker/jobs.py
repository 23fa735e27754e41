"""The broker's durable state, changed only by applying journal records.

:class:`JobBook` holds every job the broker knows (queued, processing,
uploading, and the last ``remember_finished`` finished ones), the FIFO queue,
the deliveries the uploader has not acknowledged yet, and the cumulative
counters. Live operation and journal replay call the same :meth:`JobBook.apply`,
so what the broker knows after a restart is exactly what it knew before.

Records (msgpack maps, see :mod:`broker.journal`), each with ``op`` and ``t``
(wall-clock seconds)::

    accept   {job}                          new job at the tail of the queue
    dispatch {job_id, worker, attempt}      queued -> processing
    requeue  {job_id, attempt, reason}      processing -> queued, at the HEAD
    fail     {job_id, reason, detail}       -> failed (final)
    stored   {job_id, masks}                masks on disk -> uploading, pending hand-off
    handed   {job_id}                       the uploader acknowledged the hand-off
    upstate  {job_id, state, reason, detail}   state reported by the uploader
    snapshot {...}                          the whole book (written by compaction)

Applying a record about a job the book no longer knows is a no-op, so a
journal that mentions long-forgotten jobs replays cleanly.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from common.ids import is_valid_id
from common.wire import FINAL_STATES

#: Version of the snapshot record layout; replay refuses others.
SNAPSHOT_VERSION = 1


@dataclass
class JobEntry:
    """One job as the broker tracks it (the public part is :meth:`public`)."""

    job: dict[str, Any]            #: the wire Job; ``job["attempt"]`` is the current attempt
    seq: int                       #: acceptance order, used to restore in-flight jobs in order
    state: str = "queued"
    reason: str | None = None
    detail: str | None = None
    attempts: int = 0              #: times dispatched so far
    worker: str | None = None      #: worker name holding (or that produced) the job
    submitted_at: float | None = None
    started_at: float | None = None
    processed_at: float | None = None  #: when the worker's masks were stored
    finished_at: float | None = None
    updated_at: float | None = None
    masks: dict[str, str] | None = None  #: mask name -> absolute path, once stored

    @property
    def job_id(self) -> str:
        return self.job["job_id"]

    def public(self) -> dict[str, Any]:
        """The record answered for GET /jobs/{job_id}."""
        return {"job_id": self.job_id, "user_id": self.job["user_id"],
                "provider": self.job["provider"], "state": self.state, "reason": self.reason,
                "detail": self.detail, "attempts": self.attempts, "worker": self.worker,
                "submitted_at": self.submitted_at, "started_at": self.started_at,
                "processed_at": self.processed_at, "finished_at": self.finished_at, "updated_at": self.updated_at}


def is_redelivery(entry: JobEntry, state: str) -> bool:
    """True for the one change a final job still makes: the uploader reports ``done`` for
    a job it had dead-lettered (``failed`` after its masks were stored), because
    ``python -m uploader redrive`` delivered it after all."""
    return state == "done" and entry.state == "failed" and entry.masks is not None


@dataclass
class Counters:
    """Cumulative figures; they live in snapshots, so they survive restarts."""

    accepted: int = 0
    done: int = 0        #: jobs that reached ``done`` (delivered to the asset service)
    failed: int = 0      #: jobs that reached ``failed``
    retried: int = 0     #: requeues (a job put back at the head of the queue)
    handed: int = 0      #: hand-offs acknowledged by the uploader
    #: jobs that reached ``failed``, by reason; never lowered (a Prometheus counter), so
    #: after a redrive ``failed == sum(failed_by_reason) - redelivered``
    failed_by_reason: dict[str, int] = field(default_factory=dict)
    redelivered: int = 0  #: dead letters delivered by ``uploader redrive`` (failed -> done)


@dataclass
class JobBook:
    """Jobs, queue, pending deliveries and counters; mutate only through :meth:`apply`."""

    remember_finished: int
    jobs: dict[str, JobEntry] = field(default_factory=dict)
    queue: deque[str] = field(default_factory=deque)          #: queued job ids, head first
    in_flight: dict[str, None] = field(default_factory=dict)  #: processing job ids
    pending: dict[str, None] = field(default_factory=dict)    #: stored, hand-off not acked
    finished: deque[str] = field(default_factory=deque)       #: finished job ids, oldest first
    counters: Counters = field(default_factory=Counters)
    next_seq: int = 0

    # -- applying records ------------------------------------------------
    def apply(self, record: dict[str, Any]) -> None:
        """Apply one journal record (live or during replay). Unknown ops raise ValueError."""
        op = record.get("op")
        handler = getattr(self, f"_apply_{op}", None)
        if handler is None:
            raise ValueError(f"unknown journal record op {op!r}")
        if op in ("accept", "snapshot"):
            handler(record)
            return
        entry = self.lookup(record.get("job_id"))
        if entry is not None:
            handler(entry, record)
            entry.updated_at = record.get("t", entry.updated_at)

    def _apply_accept(self, record: dict[str, Any]) -> None:
        job = dict(record["job"])
        entry = JobEntry(job=job, seq=self.next_seq, submitted_at=job.get("submitted_at"),
                         updated_at=record.get("t"))
        self.next_seq += 1
        self.jobs[entry.job_id] = entry
        self.queue.append(entry.job_id)
        self.counters.accepted += 1

    def _apply_dispatch(self, entry: JobEntry, record: dict[str, Any]) -> None:
        self._unqueue(entry.job_id)
        entry.state, entry.worker = "processing", record["worker"]
        entry.job["attempt"] = record["attempt"]
        entry.attempts += 1
        entry.started_at = record.get("t")
        self.in_flight[entry.job_id] = None

    def _apply_requeue(self, entry: JobEntry, record: dict[str, Any]) -> None:
        self.in_flight.pop(entry.job_id, None)
        self._unqueue(entry.job_id)
        entry.state, entry.worker = "queued", None
        entry.job["attempt"] = record["attempt"]
        entry.reason, entry.detail = record.get("reason"), record.get("detail")
        self.queue.appendleft(entry.job_id)
        self.counters.retried += 1

    def _apply_fail(self, entry: JobEntry, record: dict[str, Any]) -> None:
        self._finish(entry, "failed", record)

    def _apply_stored(self, entry: JobEntry, record: dict[str, Any]) -> None:
        self.in_flight.pop(entry.job_id, None)
        entry.state, entry.masks = "uploading", dict(record["masks"])
        entry.processed_at = record.get("t")
        entry.reason = entry.detail = None
        self.pending[entry.job_id] = None

    def _apply_handed(self, entry: JobEntry, record: dict[str, Any]) -> None:
        if entry.job_id in self.pending:
            del self.pending[entry.job_id]
            self.counters.handed += 1

    def _apply_upstate(self, entry: JobEntry, record: dict[str, Any]) -> None:
        state = record["state"]
        if is_redelivery(entry, state):
            self._redelivered(entry, record)
        elif state in FINAL_STATES:
            self._finish(entry, state, record)
        elif entry.state not in FINAL_STATES:
            entry.state = state

    def _redelivered(self, entry: JobEntry, record: dict[str, Any]) -> None:
        """A dead-lettered job delivered by ``uploader redrive``: failed -> done.
        It is already among the finished jobs; only its state and the counters move."""
        entry.state, entry.finished_at = "done", record.get("t")
        entry.reason, entry.detail = record.get("reason"), record.get("detail")
        self.counters.failed -= 1
        self.counters.done += 1
        self.counters.redelivered += 1

    def _finish(self, entry: JobEntry, state: str, record: dict[str, Any]) -> None:
        if entry.state in FINAL_STATES:
            return
        for table in (self.in_flight, self.pending):
            table.pop(entry.job_id, None)
        self._unqueue(entry.job_id)
        entry.state, entry.finished_at = state, record.get("t")
        entry.reason, entry.detail = record.get("reason"), record.get("detail")
        if state == "done":
            self.counters.done += 1
        else:
            self.counters.failed += 1
            by_reason = self.counters.failed_by_reason
            by_reason[entry.reason or "unknown"] = by_reason.get(entry.reason or "unknown", 0) + 1
        self.finished.append(entry.job_id)
        self._forget_old()

    def _forget_old(self) -> None:
        while len(self.finished) > self.remember_finished:
            self.jobs.pop(self.finished.popleft(), None)

    def _unqueue(self, job_id: str) -> None:
        # Dispatch takes the head, so the common case is O(1).
        if self.queue and self.queue[0] == job_id:
            self.queue.popleft()
        elif job_id in self.queue:
            self.queue.remove(job_id)

    # -- snapshots and recovery ------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """The whole book as one record (jobs in acceptance order)."""
        jobs = sorted(self.jobs.values(), key=lambda e: e.seq)
        return {"op": "snapshot", "version": SNAPSHOT_VERSION, "next_seq": self.next_seq,
                "counters": dataclasses.asdict(self.counters),
                "jobs": [dataclasses.asdict(e) for e in jobs], "queue": list(self.queue),
                "in_flight": list(self.in_flight), "pending": list(self.pending),
                "finished": list(self.finished)}

    def _apply_snapshot(self, record: dict[str, Any]) -> None:
        if record.get("version") != SNAPSHOT_VERSION:
            raise ValueError(f"snapshot version {record.get('version')!r} is not "
                             f"{SNAPSHOT_VERSION}")
        self.jobs = {e["job"]["job_id"]: JobEntry(**e) for e in record["jobs"]}
        self.queue = deque(record["queue"])
        self.in_flight = dict.fromkeys(record["in_flight"])
        self.pending = dict.fromkeys(record["pending"])
        self.finished = deque(record["finished"])
        self.counters = Counters(**record["counters"])  # fields added later keep their default
        self.next_seq = record["next_seq"]
        self._forget_old()  # queue.remember_finished may have been lowered since

    def recover(self) -> list[str]:
        """After replay: put jobs that were in flight back at the HEAD of the queue,
        in acceptance order, without counting a retry (the broker, not the job,
        went away). Returns their ids."""
        ids = sorted(self.in_flight, key=lambda j: self.jobs[j].seq)
        for job_id in reversed(ids):
            entry = self.jobs[job_id]
            entry.state, entry.worker = "queued", None
            self.queue.appendleft(job_id)
        self.in_flight.clear()
        return ids

    # -- queries ---------------------------------------------------------
    def lookup(self, job_id: Any) -> JobEntry | None:
        """The job ``job_id`` names, when it is a valid id this book knows."""
        return self.jobs.get(job_id) if isinstance(job_id, str) and is_valid_id(job_id) else None

    def public(self, job_id: Any) -> dict[str, Any] | None:
        """The record of GET /jobs/{job_id}, with ``queue_position`` (0-based) while queued."""
        entry = self.lookup(job_id)
        if entry is None:
            return None
        record = entry.public()
        if entry.state == "queued":
            record["queue_position"] = self.queue.index(job_id) if job_id in self.queue else None
        return record
