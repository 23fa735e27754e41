"""The broker core: every decision the broker makes, as a pure state machine.

No sockets and no clock reads: the caller passes each decoded-or-not frame
with the peer's routing id and the current wall-clock time ``now``, and gets
back the frames to send (:class:`Out`). Side effects go through two injected
objects: ``journal`` (a callable that durably appends one record, raising
:class:`broker.journal.JournalError`) and ``storage`` (:class:`broker.protocol.Storage`,
the only thing that touches files). The uploader's side is :class:`broker.handoff.Handoff`.

Rules kept here and nowhere else:

- **FIFO dispatch** (:meth:`BrokerCore._dispatch`): whenever there is a queued
  job and an idle worker, the head of the queue goes to the worker idle the
  longest. A worker holds at most one job; a job never waits while a worker
  is idle.
- **Failures**: a worker that goes silent for ``peer_expiry_s``, disconnects,
  or overruns ``job_deadline_s`` loses its job back to the HEAD of the queue
  with ``attempt + 1``; at ``max_attempts`` the job fails with
  ``attempts_exhausted``. Only the result for the current attempt from the
  worker holding the job is accepted; anything else is logged and ignored.
- **No worker**: once no worker has been alive for ``queue.no_worker_grace_s``
  (counted from the broker's start as well), new jobs are refused (``no_worker``)
  rather than queued where nothing can run them; shorter gaps, such as a
  worker restart, refuse nothing.
- **Durability**: an ``accept`` is journalled before it is applied, and a
  journal failure refuses the job (the broker loop group-commits: nothing the
  core returns is sent before its records are fsynced, see :mod:`broker.server`). Other records are applied even when the
  journal cannot be written (logged as an error): the worst a lost record
  can do after a crash is make a job run again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from broker.checks import MAX_DETAIL, MAX_REASON, job_problem, masks_problem, text
from broker.files import StorageError
from broker.handoff import Handoff
from broker.jobs import JobBook, JobEntry
from broker.journal import JournalError
from broker.peers import WorkerEntry, WorkerRegistry, clean_info
from broker.protocol import FRONT, UPLOADER, WORKERS, Out, Storage
from broker.stats import build_stats
from common import wire
from common.config import BrokerSettings, QueueSettings
from common.histogram import Histograms
from common.logs import event

#: Seconds dispatch pauses after a result could not be stored (disk full or
#: read-only): the job waits at the head of the queue instead of spending its
#: attempts on a fault that is not its own.
STORAGE_RETRY_S = 5.0

log = logging.getLogger("broker")


class BrokerCore:
    """The broker's state and decisions; see the module docstring."""

    def __init__(self, queue: QueueSettings, broker: BrokerSettings, book: JobBook,
                 journal: Callable[[dict], None], storage: Storage, started_at: float,
                 journal_stats: Callable[[], dict] | None = None) -> None:
        self.queue_cfg, self.broker_cfg = queue, broker
        self.book, self.journal, self.storage = book, journal, storage
        self.journal_stats = journal_stats   #: the journal's own figures, for ``stats``
        self.started_at = started_at
        self.workers = WorkerRegistry()
        self.stopping = False
        self.paused_until = 0.0   #: no dispatch before this time (storage trouble)
        self.worker_seen_at = started_at   #: when a worker was last heard from
        #: durations seen by the broker and reported by workers (see broker.stats)
        self.timings = Histograms()
        self.handoff = Handoff(book, self._commit, self.timings)
        self._out: list[Out] = []

    # -- plumbing --------------------------------------------------------
    def _emit(self, channel: str, peer: bytes, msg_type: str, **fields: Any) -> None:
        self._out.append(Out(channel, peer, wire.encode(msg_type, **fields)))

    def _flush(self, now: float) -> list[Out]:
        self._dispatch(now)
        out, self._out = self._out, []
        return out

    def _decode(self, frame: bytes, channel: str) -> dict[str, Any] | None:
        try:
            return wire.decode(frame)
        except wire.WireError as exc:
            event(log, "invalid_frame", logging.WARNING, channel=channel, error=str(exc))
            return None

    def _commit(self, record: dict[str, Any]) -> bool:
        """Journal then apply a non-accept record (applied even if journalling fails).
        Returns whether the record reached the journal."""
        journalled = True
        try:
            self.journal(record)
        except JournalError as exc:
            journalled = False
            event(log, "journal_write_failed", logging.ERROR, job_id=record.get("job_id"),
                  op=record["op"], error=str(exc))
        self.book.apply(record)
        return journalled

    # -- front end -------------------------------------------------------
    def handle_front(self, peer: bytes, frame: bytes, now: float) -> list[Out]:
        """A ``submit``, ``job`` or ``stats`` request; the reply goes back to ``peer``."""
        msg = self._decode(frame, FRONT)
        if msg is not None:
            kind, req = msg["type"], msg.get("req")
            if kind == "submit":
                self._emit(FRONT, peer, "submitted", req=req, **self._submit(msg["job"], now))
            elif kind == "job":
                self._emit(FRONT, peer, "job", req=req, record=self.book.public(msg.get("job_id")))
            elif kind == "stats":
                self._emit(FRONT, peer, "stats", req=req, stats=self.stats(now))
            elif kind == "room":
                self._emit(FRONT, peer, "room", req=req, **self._room())
            else:
                event(log, "invalid_frame", logging.WARNING, channel=FRONT,
                      error=f"unexpected message type {kind!r}")
        return self._flush(now)

    def _submit(self, job: Any, now: float) -> dict[str, Any]:
        """Accept, refuse or recognise one job; returns the ``submitted`` fields."""
        problem = "shutting down" if self.stopping else job_problem(job, self.storage.owns)
        if problem:
            event(log, "job_refused", logging.WARNING, job_id=text(job.get("job_id"), 130)
                  if isinstance(job, dict) else None, error=problem)
            return self._submitted("error", error=problem)
        known = self.book.jobs.get(job["job_id"])
        if known is not None:
            event(log, "job_duplicate", job_id=known.job_id, state=known.state)
            return self._submitted("duplicate", known.state)
        idle_s = self.no_worker_s(now)
        if idle_s > self.queue_cfg.no_worker_grace_s:
            error = f"no segmentation worker has been alive for {idle_s:.0f} s"
            event(log, "job_refused", logging.WARNING, job_id=job["job_id"], error="no_worker",
                  detail=error)
            return self._submitted("no_worker", error=error)
        if len(self.book.queue) >= self.queue_cfg.max_size:
            event(log, "job_refused", logging.WARNING, job_id=job["job_id"], error="queue_full")
            return self._submitted("queue_full")
        record = {"op": "accept", "t": now, "job": wire.make_job(
            job["job_id"], job["user_id"], job["provider"], job["image_path"],
            float(job["submitted_at"]), 0)}
        try:
            self.journal(record)
        except JournalError as exc:
            event(log, "job_refused", logging.ERROR, job_id=job["job_id"], error=str(exc))
            return self._submitted("error", error=f"the broker cannot record the job: {exc}")
        self.book.apply(record)
        event(log, "job_accepted", job_id=job["job_id"], user_id=job["user_id"],
              queue_size=len(self.book.queue))
        return self._submitted("accepted", "queued")

    def _room(self) -> dict[str, Any]:
        """Whether a submit now would find room in the queue (the ``room`` reply)."""
        size = len(self.book.queue)
        return {"open": not self.stopping and size < self.queue_cfg.max_size,
                "queue_size": size, "queue_max": self.queue_cfg.max_size}

    def _submitted(self, outcome: str, state: str | None = None,
                   error: str | None = None) -> dict[str, Any]:
        fields = {"outcome": outcome, "state": state, "queue_size": len(self.book.queue),
                  "queue_max": self.queue_cfg.max_size}
        return fields if error is None else {**fields, "error": error}

    def no_worker_s(self, now: float) -> float:
        """Seconds since a worker was last alive (0 while one is connected)."""
        return 0.0 if self.workers.by_name else max(0.0, now - self.worker_seen_at)

    def stats(self, now: float) -> dict[str, Any]:
        """The ``stats`` reply (see :func:`broker.stats.build_stats`)."""
        return build_stats(self.book, self.workers.all(), self.handoff, self.queue_cfg,
                           self.timings.snapshot(), self.journal_stats and self.journal_stats(),
                           now=now, uptime_s=now - self.started_at,
                           no_worker_s=self.no_worker_s(now))

    # -- workers ---------------------------------------------------------
    def handle_worker(self, peer: bytes, frame: bytes, now: float) -> list[Out]:
        """One frame from a worker's DEALER."""
        msg = self._decode(frame, WORKERS)
        if msg is None:
            return self._flush(now)
        kind = msg["type"]
        if kind in ("ready", "heartbeat"):
            self._worker_hello(peer, msg, now)
            return self._flush(now)
        worker = self.workers.lookup(peer)
        handler = {"result": self._on_result, "failed": self._on_failed,
                   "disconnect": self._on_disconnect}.get(kind)
        if handler is None:
            event(log, "invalid_frame", logging.WARNING, channel=WORKERS,
                  error=f"unexpected message type {kind!r}")
            return self._flush(now)
        if worker is None:  # e.g. a worker already expired for silence
            event(log, f"stale_{kind}", logging.WARNING, job_id=text(msg.get("job_id"), 130),
                  why="unknown worker")
            return self._flush(now)
        worker.last_seen = now
        handler(worker, msg, now)
        return self._flush(now)

    def _worker_hello(self, peer: bytes, msg: dict[str, Any], now: float) -> None:
        info = clean_info(msg.get("worker"))
        if info is None:
            event(log, "invalid_frame", logging.WARNING, channel=WORKERS,
                  error=f"{msg['type']} without a valid worker id")
            return
        worker, new = self.workers.seen(peer, info, now)
        self.worker_seen_at = now
        if new:
            event(log, "worker_joined", worker=worker.name, host=info.get("host"),
                  engine=info.get("engine"), model_loaded=info.get("model_loaded"),
                  inline_images=worker.inline_images)
        if msg["type"] == "ready" and worker.job_id is not None:
            # It asks for work while we think it holds a job: it has dropped that job.
            self._release(worker, "worker_reset", now)
        if msg["type"] == "ready" or (worker.job_id is None and info.get("busy") is False):
            self.workers.mark_idle(worker)

    def _held(self, worker: WorkerEntry, msg: dict[str, Any]) -> JobEntry | None:
        """The job a result/failure is about, if ``worker`` holds its current attempt."""
        entry = self.book.lookup(msg.get("job_id"))
        if (entry is None or entry.state != "processing" or entry.worker != worker.name
                or entry.job["attempt"] != msg.get("attempt")):
            event(log, f"stale_{msg['type']}", logging.WARNING, job_id=text(msg.get("job_id"), 130),
                  worker=worker.name, attempt=msg.get("attempt"),
                  state=None if entry is None else entry.state)
            return None
        worker.job_id = worker.deadline = None
        return entry

    def _on_result(self, worker: WorkerEntry, msg: dict[str, Any], now: float) -> None:
        entry = self._held(worker, msg)
        if entry is None:
            return
        problem = masks_problem(msg["masks"])
        if problem is not None:
            worker.jobs_failed += 1
            event(log, "bad_result", logging.ERROR, job_id=entry.job_id, worker=worker.name,
                  error=problem)
            self._requeue(entry, "bad_result", now, problem)
            return
        try:
            paths = self.storage.store_masks(entry.job_id, msg["masks"])
        except StorageError as exc:
            event(log, "store_failed", logging.ERROR, job_id=entry.job_id, error=str(exc),
                  dispatch_paused_s=STORAGE_RETRY_S)
            self.paused_until = now + STORAGE_RETRY_S
            self._requeue(entry, "store_failed", now, str(exc), count=False)
            return
        worker.jobs_done += 1
        self._observe_stages(msg.get("timings"))
        journalled = self._commit({"op": "stored", "job_id": entry.job_id, "masks": paths,
                                   "t": now})
        event(log, "job_result", job_id=entry.job_id, worker=worker.name,
              attempt=entry.job["attempt"], engine=msg.get("engine"), timings=msg.get("timings"),
              run_s=round(now - (entry.started_at or now), 3))
        if journalled:
            # Unjournalled, a crash replays the job as in flight and runs it again, which
            # needs the photo; the uploader removes it once the job is delivered.
            self.storage.delete_input(entry.job["image_path"])
        self._out.extend(self.handoff.deliver([entry], now))

    def _observe_stages(self, timings: Any) -> None:
        """A result's per-stage times (``stages_ms``: stage -> ms) into the histograms."""
        stages = timings.get("stages_ms") if isinstance(timings, dict) else None
        if not isinstance(stages, dict):
            return
        for stage, ms in stages.items():
            if isinstance(stage, str) and stage in wire.STAGES and isinstance(ms, (int, float)):
                self.timings.observe(f"stage_{stage}", ms / 1000.0)

    def _on_failed(self, worker: WorkerEntry, msg: dict[str, Any], now: float) -> None:
        entry = self._held(worker, msg)
        if entry is None:
            return
        worker.jobs_failed += 1
        reason = text(msg["reason"], MAX_REASON) or "worker_error"
        detail = text(msg.get("detail"), MAX_DETAIL)
        if msg.get("retryable") is True:
            self._requeue(entry, reason, now, detail)
        else:
            self._fail(entry, reason, detail, now)

    def _on_disconnect(self, worker: WorkerEntry, msg: dict[str, Any], now: float) -> None:
        event(log, "worker_left", worker=worker.name, job_id=worker.job_id)
        self._drop_worker(worker, "worker_disconnected", now)

    def _drop_worker(self, worker: WorkerEntry, reason: str, now: float) -> None:
        self.workers.remove(worker)
        if worker.job_id is not None:
            self._release(worker, reason, now)

    def _release(self, worker: WorkerEntry, reason: str, now: float, count: bool = True) -> None:
        """Take the job ``worker`` holds away from it, back to the head of the queue."""
        entry = self.book.lookup(worker.job_id)
        worker.job_id = worker.deadline = None
        if entry is not None and entry.state == "processing" and entry.worker == worker.name:
            self._requeue(entry, reason, now, count=count)

    def _requeue(self, entry: JobEntry, reason: str, now: float, detail: str | None = None,
                 count: bool = True) -> None:
        """Back to the HEAD of the queue, or failed once ``max_attempts`` are spent."""
        attempt = entry.job["attempt"] + (1 if count else 0)
        if attempt >= self.queue_cfg.max_attempts:
            why = f"gave up after {attempt} attempts; the last ended with {reason}"
            self._fail(entry, "attempts_exhausted", why + (f": {detail}" if detail else ""), now)
            return
        self._commit({"op": "requeue", "job_id": entry.job_id, "attempt": attempt,
                      "reason": reason, "detail": detail, "t": now})
        event(log, "job_requeued", logging.WARNING, job_id=entry.job_id, reason=reason,
              attempt=attempt, detail=detail)

    def _fail(self, entry: JobEntry, reason: str, detail: str | None, now: float) -> None:
        self._commit({"op": "fail", "job_id": entry.job_id, "reason": reason,
                      "detail": detail, "t": now})
        event(log, "job_failed", logging.WARNING, job_id=entry.job_id, reason=reason,
              detail=detail, attempts=entry.attempts)
        self.storage.delete_input(entry.job["image_path"])

    def _dispatch(self, now: float) -> None:
        """THE dispatch rule: the queue's head goes to the worker idle the longest."""
        if now < self.paused_until:
            return
        while self.book.queue:
            worker = self.workers.take_idle()
            if worker is None:
                return
            entry = self.book.jobs[self.book.queue[0]]
            if entry.attempts == 0 and entry.submitted_at is not None:
                self.timings.observe("queue_wait", now - entry.submitted_at)
            self._commit({"op": "dispatch", "job_id": entry.job_id, "worker": worker.name,
                          "attempt": entry.job["attempt"], "t": now})
            worker.job_id = entry.job_id
            worker.deadline = now + self.queue_cfg.job_deadline_s
            image = None
            if worker.inline_images:
                image = self.storage.read_image(entry.job["image_path"])
            self._out.append(Out(WORKERS, worker.peer, wire.encode(
                "job", job=dict(entry.job), image=image, deadline_s=self.queue_cfg.job_deadline_s),
                job_id=entry.job_id))
            event(log, "job_dispatched", job_id=entry.job_id, worker=worker.name,
                  attempt=entry.job["attempt"], inline=image is not None,
                  waited_s=round(now - (entry.submitted_at or now), 3))

    def undeliverable(self, out: Out, now: float) -> list[Out]:
        """A dispatch could not be sent: that worker is gone; its job goes back uncounted."""
        worker = self.workers.lookup(out.peer)
        if worker is not None and worker.job_id == out.job_id:
            event(log, "worker_lost", logging.WARNING, worker=worker.name, job_id=out.job_id,
                  why="unreachable")
            self.workers.remove(worker)
            self._release(worker, "worker_unreachable", now, count=False)
        return self._flush(now)

    # -- uploader --------------------------------------------------------
    def handle_uploader(self, peer: bytes, frame: bytes, now: float) -> list[Out]:
        """One frame from the uploader's DEALER (see :class:`broker.handoff.Handoff`)."""
        msg = self._decode(frame, UPLOADER)
        if msg is not None:
            self._out.extend(self.handoff.handle(peer, msg, now))
        return self._flush(now)

    # -- time ------------------------------------------------------------
    def tick(self, now: float) -> list[Out]:
        """Expire silent peers, take overrun jobs back, re-send un-acked deliveries."""
        cutoff = now - self.broker_cfg.peer_expiry_s
        for worker in self.workers.silent_since(cutoff):
            event(log, "worker_lost", logging.WARNING, worker=worker.name, job_id=worker.job_id,
                  why="silent", silent_s=round(now - worker.last_seen, 3))
            self._drop_worker(worker, "worker_lost", now)
        for worker in self.workers.all():
            if worker.job_id is not None and worker.deadline is not None and now > worker.deadline:
                event(log, "job_deadline_exceeded", logging.WARNING, job_id=worker.job_id,
                      worker=worker.name, deadline_s=self.queue_cfg.job_deadline_s)
                self._release(worker, "deadline_exceeded", now)  # it stays busy until `ready`
        self._out.extend(self.handoff.tick(now, silent_before=cutoff))
        return self._flush(now)

    def heartbeats(self) -> list[Out]:
        """A heartbeat for every connected worker and the uploader."""
        beat = wire.encode("heartbeat")
        out = [Out(WORKERS, w.peer, beat) for w in self.workers.all()]
        if self.handoff.uploader is not None:
            out.append(Out(UPLOADER, self.handoff.uploader.peer, beat))
        return out

