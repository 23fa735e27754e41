"""The uploader service: the ZeroMQ loop, the upload threads and the hand-off
protocol with the broker (see ``common/wire.py`` and ``docs/uploader.md``).

The loop (main thread) only does quick work: it spools each ``deliver``
durably and acks it, sends heartbeats and states, and watches the broker.
Uploads run on a small pool of threads, so a slow asset service never
delays an ack or a heartbeat; a job is never uploaded by two threads at once.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
import urllib.parse
from typing import Any, Callable

import zmq

from common.config import Settings
from common.ids import is_valid_id
from common.logs import event
from common.wire import encode

from .delivery import Interrupted
from .link import BrokerLink
from .records import try_lock
from .runner import JobRunner, make_runner
from .spool import SpoolError

log = logging.getLogger("uploader.service")

#: Upload threads (concurrent deliveries), in threads.
UPLOAD_THREADS = 4
#: Longest the loop waits for a broker message before doing its chores, in ms.
POLL_MS = 50
#: How long stopping waits for upload threads to reach a safe point, in seconds.
STOP_GRACE_S = 5.0


class UploadPool:
    """``size`` daemon threads running ``run(job_id)``; each job at most once at a time."""

    def __init__(self, size: int, run: Callable[[str], Any]):
        self._run = run
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._busy: set[str] = set()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._loop, name=f"upload-{i}", daemon=True)
                         for i in range(size)]
        for t in self._threads:
            t.start()

    def submit(self, job_id: str) -> bool:
        """Queue ``job_id`` unless it is already queued or running."""
        with self._lock:
            if job_id in self._busy:
                return False
            self._busy.add(job_id)
        self._queue.put(job_id)
        return True

    def _loop(self) -> None:
        while (job_id := self._queue.get()) is not None:
            try:
                self._run(job_id)
            except Interrupted:
                event(log, "upload_interrupted", job_id=job_id)
            except Exception:  # logged with the job id; the job stays in the spool
                event(log, "upload_thread_error", logging.ERROR, exc_info=True, job_id=job_id)
            finally:
                with self._lock:
                    self._busy.discard(job_id)

    def stop(self, timeout_s: float) -> None:
        """Let the threads finish their current job, up to ``timeout_s`` in all."""
        for _ in self._threads:
            self._queue.put(None)
        deadline = time.monotonic() + timeout_s
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))


class UploaderService:
    """The ``python -m uploader`` process. Call :meth:`run`; :meth:`stop` (any
    thread, e.g. a signal handler) makes it return."""

    def __init__(self, settings: Settings, threads: int = UPLOAD_THREADS):
        self.settings = settings
        self._stopping = threading.Event()
        self.guard = threading.Lock()
        self.runner: JobRunner = make_runner(settings, self._sleep, self.guard)
        self.stores = self.runner.stores
        self.threads = threads
        self.link: BrokerLink | None = None

    def _sleep(self, seconds: float) -> None:
        """Retry waits: cut short (raising :class:`Interrupted`) when stopping."""
        if self._stopping.wait(seconds):
            raise Interrupted()

    def stop(self) -> None:
        self._stopping.set()

    def run(self) -> int:
        """Resume the spool, then serve the broker until :meth:`stop`. Returns 0,
        or 1 at once when another uploader already serves this STATE_DIR."""
        lock_fd = try_lock(self.stores.root / "service.lock")
        if lock_fd is None:
            event(log, "uploader_already_running", logging.ERROR, state_dir=str(self.stores.root))
            return 1
        try:
            return self._serve()
        finally:
            os.close(lock_fd)

    def _serve(self) -> int:
        pool = UploadPool(self.threads, self.runner.run)
        pending = self.stores.spool.pending()
        for job_id in pending:
            pool.submit(job_id)
        self.stores.outbox.rescan()
        event(log, "uploader_started", resumed=len(pending), url=safe_url(self.settings.upload.url),
              endpoint=self.settings.broker.uploader_endpoint, threads=self.threads)
        ctx = zmq.Context()
        self.link = BrokerLink(ctx, self.settings.broker)
        self.link.open()
        try:
            self._loop(pool)
        finally:
            self.link.close()
            ctx.term()
            pool.stop(STOP_GRACE_S)
            event(log, "uploader_stopped")
        return 0

    def _loop(self, pool: UploadPool) -> None:
        link, interval = self.link, self.settings.broker.heartbeat_interval_s
        next_beat, ready_due = time.monotonic(), False
        while not self._stopping.is_set():
            for kind, msg in link.poll(POLL_MS):
                if kind == "connected":
                    ready_due = True
                else:
                    self._handle(msg, pool)
            if ready_due and link.connected:
                # until the pipe is attached a send may fail: then try again next turn
                ready_due = not link.send(encode("ready", counters=self.stores.counters.read()))
            self._flush_states()
            now = time.monotonic()
            if now >= next_beat:
                next_beat = now + interval
                link.send(self._heartbeat())
                self.stores.outbox.rescan()
                self.stores.outbox.retire(link.epoch, link.heard_at, link.expiry_s)
            link.check_silence(now)

    def _heartbeat(self) -> bytes:
        """A heartbeat with the figures the broker passes on to /stats and /metrics."""
        try:
            spool = self.stores.spool.depths()
        except OSError:
            spool = {}
        return encode("heartbeat", counters=self.stores.counters.read(),
                      timings=self.runner.timings_snapshot(), spool=spool)

    def _flush_states(self) -> None:
        """Send every state not yet sent on the current connection."""
        link = self.link
        if not link.connected:
            return
        for job_id, version, frame in self.stores.outbox.due(link.epoch):
            if not link.send(frame):
                return
            self.stores.outbox.mark_sent(job_id, version, link.epoch, time.monotonic())

    def _handle(self, msg: dict[str, Any], pool: UploadPool) -> None:
        if msg["type"] == "deliver":
            try:
                self._deliver(msg, pool)
            except Exception:  # not acked, so the broker re-sends it; the loop goes on
                job = msg.get("job")
                event(log, "deliver_internal_error", logging.ERROR, exc_info=True,
                      job_id=job.get("job_id") if isinstance(job, dict) else None)
        elif msg["type"] != "heartbeat":
            event(log, "broker_unexpected_message", logging.WARNING, type=msg["type"])

    def _deliver(self, msg: dict[str, Any], pool: UploadPool) -> None:
        """Spool (durably) then ack; a job already known is acked again, not re-sent."""
        job = msg["job"]
        job_id = job.get("job_id") if isinstance(job, dict) else None
        if not isinstance(job_id, str) or not is_valid_id(job_id):
            self._refuse(str(job_id)[:128], "job_id is not a valid id")
            return
        with self.guard:
            known = "delivered" if job_id in self.stores.ledger else self.stores.spool.where(job_id)
            if known is None:
                try:
                    self.stores.spool.add(job, msg["masks"])
                except SpoolError as exc:
                    self._refuse(job_id, str(exc))
                    return
                except OSError as exc:  # disk trouble: no ack, the broker re-sends later
                    event(log, "upload_spool_failed", logging.ERROR, job_id=job_id,
                          error=f"{type(exc).__name__}: {exc}")
                    return
        self.link.send(encode("ack", job_id=job_id))
        if known is None:
            event(log, "upload_spooled", job_id=job_id, masks=sorted(msg["masks"]))
            pool.submit(job_id)
        else:
            event(log, "deliver_duplicate", job_id=job_id, known=known)
            if known == "spooled":
                pool.submit(job_id)  # a no-op unless an earlier hand-off broke off half-way
            self._restate(job_id, known)

    def _restate(self, job_id: str, known: str) -> None:
        """Repeat a finished job's final state: a broker that re-sends a hand-off
        may also have missed it (states are idempotent for the broker)."""
        if known == "delivered":
            self.stores.outbox.put(job_id, "done")
        elif known == "dead":
            try:
                dead = self.stores.spool.load(job_id, dead=True).manifest.get("dead") or {}
            except (SpoolError, OSError, ValueError):
                return  # being redriven right now; its new state will follow
            self.stores.outbox.put(job_id, "failed", dead.get("reason"), dead.get("detail"))

    def _refuse(self, job_id: str, why: str) -> None:
        """Ack a delivery that can never be uploaded and report it failed."""
        event(log, "deliver_refused", logging.ERROR, job_id=job_id, error=why)
        self.link.send(encode("ack", job_id=job_id))
        if is_valid_id(job_id):
            self.stores.outbox.put(job_id, "failed", "upload_invalid_delivery", why)
        else:
            self.link.send(encode("state", job_id=job_id, state="failed",
                                  reason="upload_invalid_delivery", detail=why))


def safe_url(url: str | None) -> str:
    """``url`` without credentials or query, fit for a log line."""
    parts = urllib.parse.urlsplit(url or "")
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urllib.parse.urlunsplit((parts.scheme, host, parts.path, "", ""))
