"""The uploader service: the ZeroMQ loop around :class:`uploader.core.UploaderCore`
(quick work only), and the upload threads, so a slow asset service never delays
an ack or a heartbeat."""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
import urllib.parse
from collections.abc import Callable
from typing import Any

import zmq

from common.broker_link import BrokerLink
from common.config import Settings
from common.logs import event

from .core import UploaderCore
from .delivery import Interrupted
from .records import try_lock
from .runner import JobRunner, make_runner

log = logging.getLogger("uploader.service")

#: Upload threads (concurrent deliveries), in threads.
UPLOAD_THREADS = 4
#: Longest the loop waits for a broker message before doing its chores, in ms.
POLL_MS = 50
#: How long stopping waits for upload threads to reach a safe point, in seconds.
STOP_GRACE_S = 5.0


class UploadPool:
    """``size`` daemon threads running ``run(job_id)`` once started; each job
    at most once at a time."""

    def __init__(self, size: int, run: Callable[[str], Any]):
        self._run = run
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._busy: set[str] = set()
        self._lock = threading.Lock()
        self.threads = [threading.Thread(target=self._loop, name=f"upload-{i}", daemon=True)
                        for i in range(size)]

    def start(self) -> None:
        for t in self.threads:
            t.start()

    def submit(self, job_id: str) -> None:
        """Queue ``job_id`` unless it is already queued or running."""
        with self._lock:
            if job_id in self._busy:
                return
            self._busy.add(job_id)
        self._queue.put(job_id)

    def _loop(self) -> None:
        while (job_id := self._queue.get()) is not None:
            try:
                self._run(job_id)
            except Interrupted:
                event(log, "upload_interrupted", job_id=job_id)
            except Exception:  # noqa: BLE001 - logged; the job stays in the spool
                event(log, "upload_thread_error", logging.ERROR, exc_info=True, job_id=job_id)
            finally:
                with self._lock:
                    self._busy.discard(job_id)

    def stop(self, timeout_s: float) -> None:
        """Let the threads finish their current job, up to ``timeout_s`` in all."""
        for _ in self.threads:
            self._queue.put(None)
        deadline = time.monotonic() + timeout_s
        for t in self.threads:
            t.join(max(0.0, deadline - time.monotonic()))


class UploaderService:
    """The ``python -m uploader`` process. Call :meth:`run`; :meth:`stop` (any
    thread, e.g. a signal handler) makes it return."""

    def __init__(self, settings: Settings, threads: int = UPLOAD_THREADS):
        self.settings = settings
        self._stopping = threading.Event()
        self.runner: JobRunner = make_runner(settings, self._sleep)
        self.stores = self.runner.stores
        self.pool = UploadPool(threads, self.runner.run)
        self.core = UploaderCore(self.stores, self.pool.submit, self.runner.guard)
        self.ctx = zmq.Context()
        self.link = BrokerLink(self.ctx, settings.broker.uploader_endpoint,
                               settings.broker.peer_expiry_s, immediate=True)

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
        try:
            if lock_fd is None:
                event(log, "uploader_already_running", logging.ERROR,
                      state_dir=str(self.stores.root))
                return 1
            self._serve()
            return 0
        finally:
            self.link.close()
            self.ctx.term()
            if lock_fd is not None:
                self.pool.stop(STOP_GRACE_S)
                event(log, "uploader_stopped")
                os.close(lock_fd)

    def _serve(self) -> None:
        self.pool.start()
        pending = self.stores.spool.pending()
        for job_id in pending:
            self.pool.submit(job_id)
        self.stores.outbox.rescan()
        event(log, "uploader_started", resumed=len(pending), url=safe_url(self.settings.upload.url),
              endpoint=self.link.endpoint, threads=len(self.pool.threads))
        self.link.connect()
        link, interval = self.link, self.settings.broker.heartbeat_interval_s
        next_beat, greeted = time.monotonic(), 0   # the epoch that was sent ``ready``
        while not self._stopping.is_set():
            for msg in link.poll(POLL_MS)[0]:
                for frame in self.core.handle(msg):
                    link.send(frame)
            # until the pipe is attached a send may fail: then try again next turn
            if link.connected and greeted != link.epoch and link.send(self.core.ready()):
                greeted = link.epoch
            self._flush_states()
            now = time.monotonic()
            if now >= next_beat:
                next_beat = now + interval
                link.send(self.core.heartbeat(self.runner.timings_snapshot()))
                self.stores.outbox.rescan()
                self.stores.outbox.retire(link.epoch, link.heard_at, link.expiry_s)
            link.check(now)

    def _flush_states(self) -> None:
        """Send every state not yet sent on the current connection."""
        link = self.link
        for job_id, version, frame in self.stores.outbox.due(link.epoch) if link.connected else []:
            if not link.send(frame):
                return
            self.stores.outbox.mark_sent(job_id, version, link.epoch, time.monotonic())


def safe_url(url: str | None) -> str:
    """``url`` without credentials or query, fit for a log line."""
    parts = urllib.parse.urlsplit(url or "")
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urllib.parse.urlunsplit((parts.scheme, host, parts.path, "", ""))
