"""The broker process: three ROUTER sockets around :class:`broker.state.BrokerCore`.

This module only moves frames: it receives ``[routing id, frame]`` pairs,
hands them to the core with the current time, sends what the core returns,
and calls :meth:`BrokerCore.tick` and :meth:`BrokerCore.heartbeats` every
``broker.heartbeat_interval_s``. Every decision lives in the core.

Group commit: the journal only writes during a loop turn; before anything the
turn produced is sent (an ``accepted`` reply, i.e. a 202, included) or any photo
is deleted, one fsync makes every record of the turn durable (see
:meth:`BrokerServer._flush`). A burst of N submits costs one fsync, not N. If that
fsync fails, nothing of the turn is sent: the broker stops (exit 1) and the next
start's replay decides which records exist.

Signals: SIGTERM/SIGINT stop the loop (requests still waiting are answered
``error: shutting down``; every accepted job is already journalled), SIGHUP
re-reads the CURVE allow-list directory.
"""

from __future__ import annotations

import logging
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import zmq
from zmq.auth.thread import ThreadAuthenticator

from broker.files import TempStorage
from broker.journal import Journal, JournalError, restore_book
from broker.protocol import FRONT, UPLOADER, WORKERS, Out
from broker.state import BrokerCore
from common import curve
from common.config import Settings
from common.logs import event

#: Longest single poll, in seconds, so a stop request is noticed promptly.
MAX_POLL_S = 0.2

#: Largest frame accepted from a worker, in bytes (results carry the mask PNGs).
MAX_WORKER_FRAME_BYTES = 64 * 1024 * 1024

#: Largest frame accepted from the front end or the uploader, in bytes.
MAX_FRAME_BYTES = 1024 * 1024

#: Frames taken from one socket per round, so one chatty peer cannot starve the others.
BATCH = 200

#: How long unsent frames may delay closing a socket, in milliseconds.
LINGER_MS = 500

log = logging.getLogger("broker")


class BrokerServer:
    """Owns the sockets, the journal and the core; :meth:`run` is the loop.

    The constructor replays the journal and binds every socket (raising
    JournalError, CurveError or ZMQError, with whatever it opened closed).
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.ctx = zmq.Context()
        self.auth: ThreadAuthenticator | None = None   #: the CURVE allow-list, when enabled
        self.journal = Journal(settings.state_dir / "broker", group_commit=True)
        self.storage = TempStorage(settings.temp_folder, defer_deletes=True)
        self._outbox: list[Out] = []   #: produced this turn; sent once the journal is synced
        self._failed = False           #: the journal could not be synced: stop, send nothing
        self._stop = self._reload = False
        self.sockets: dict[str, zmq.Socket] = {}
        self.poller = zmq.Poller()
        try:
            book, recovered = restore_book(self.journal, settings.queue.remember_finished)
            event(log, "journal_replayed", queued=len(book.queue), recovered_in_flight=recovered,
                  pending_handoff=len(book.pending), known_jobs=len(book.jobs))
            self.core = BrokerCore(settings.queue, settings.broker, book, self.journal.append,
                                   self.storage, started_at=time.time(),
                                   journal_stats=self.journal.stats)
            self._bind_all()
        except BaseException:
            self.close()
            raise

    def _bind_all(self) -> None:
        s, b = self.settings, self.settings.broker
        self.sockets[FRONT] = self._bind(b.frontend_endpoint, MAX_FRAME_BYTES,
                                         "BROKER_FRONTEND_ENDPOINT", mandatory=False)
        self.sockets[UPLOADER] = self._bind(b.uploader_endpoint, MAX_FRAME_BYTES,
                                            "BROKER_UPLOADER_ENDPOINT")
        self.sockets[WORKERS] = self._bind(b.worker_bind, MAX_WORKER_FRAME_BYTES,
                                           "BROKER_WORKER_BIND", secure=b.curve.enabled)
        for sock in self.sockets.values():
            self.poller.register(sock, zmq.POLLIN)
        if not b.curve.enabled and not _is_local(b.worker_bind):
            event(log, "worker_socket_unauthenticated", logging.WARNING, workers=b.worker_bind,
                  advice="enable broker.curve (BROKER_CURVE) when workers connect from other hosts")
        event(log, "broker_started", frontend=b.frontend_endpoint, workers=b.worker_bind,
              uploader=b.uploader_endpoint, curve=b.curve.enabled,
              queue_max=s.queue.max_size, journal=str(self.journal.path))

    def _bind(self, endpoint: str, max_bytes: int, setting: str, mandatory: bool = True,
              secure: bool = False) -> zmq.Socket:
        sock = self.ctx.socket(zmq.ROUTER)
        sock.linger = LINGER_MS
        sock.setsockopt(zmq.MAXMSGSIZE, max_bytes)
        # Mandatory routing makes a send to a vanished peer fail loudly, so a job
        # sent to a worker that is gone goes straight back to the queue.
        sock.setsockopt(zmq.ROUTER_MANDATORY, int(mandatory))
        if secure:
            keys_dir, secret = self._curve_paths()
            self.auth = curve.start_authenticator(self.ctx, keys_dir)
            curve.make_server(sock, secret)
            event(log, "curve_enabled", authorized_keys_dir=str(keys_dir),
                  keys=len(list(keys_dir.glob("*.key"))))
        try:
            sock.bind(endpoint)
        except zmq.ZMQError as exc:
            sock.close(0)
            # the bare "Address already in use" names neither the endpoint nor its setting
            raise zmq.ZMQError(exc.errno, f"{endpoint} ({setting}): {exc.strerror}") from None
        return sock

    def _curve_paths(self) -> tuple[Path, Path]:
        """The allow-list directory and the server's secret key file."""
        cfg, resolve = self.settings.broker.curve, self.settings.resolve
        keys_dir, secret = resolve(cfg.authorized_keys_dir), resolve(cfg.server_secret_key_file)
        if keys_dir is None or secret is None:  # load_settings refuses this already
            raise curve.CurveError("broker.curve needs authorized_keys_dir and "
                                   "server_secret_key_file")
        return keys_dir, secret

    # -- loop ------------------------------------------------------------
    def request_stop(self, *_: Any) -> None:
        self._stop = True

    def request_reload(self, *_: Any) -> None:
        self._reload = True

    def run(self) -> int:
        """Serve until :meth:`request_stop`; returns the exit code."""
        interval = self.settings.broker.heartbeat_interval_s
        next_beat = time.monotonic()
        while not self._stop:
            if self._reload:
                self._reload_keys()
            wait = min(MAX_POLL_S, max(0.0, next_beat - time.monotonic()))
            ready = dict(self.poller.poll(int(wait * 1000)))
            for channel, sock in self.sockets.items():
                if sock in ready:
                    self._drain(channel, sock)
            if time.monotonic() >= next_beat:
                self._outbox.extend(self.core.heartbeats())
                self._guarded(self.core.tick, time.time())
                next_beat = time.monotonic() + interval
            self._flush()
            if self._failed:
                break
            if self.journal.needs_compaction:
                self._compact()
        if self._failed:
            self.close()
            return 1
        self._shutdown()
        return 0

    def _drain(self, channel: str, sock: zmq.Socket) -> None:
        handler = {FRONT: self.core.handle_front, WORKERS: self.core.handle_worker,
                   UPLOADER: self.core.handle_uploader}[channel]
        for _ in range(BATCH):
            try:
                frames = sock.recv_multipart(zmq.NOBLOCK, copy=True)
            except zmq.Again:
                return
            if len(frames) != 2:
                event(log, "invalid_frame", logging.WARNING, channel=channel,
                      error=f"expected [routing id, message], got {len(frames)} frames")
                continue
            self._guarded(handler, frames[0], frames[1], time.time())

    def _guarded(self, func: Callable[..., list[Out]], *args: Any) -> None:
        """Run a core call and queue its output for :meth:`_flush`; a bug is logged,
        never fatal."""
        try:
            self._outbox.extend(func(*args))
        except Exception:  # logged with its traceback: event()'s fields, via log.exception
            log.exception("internal_error", extra={"event": "internal_error",
                                                   "fields": {"call": func.__name__}})

    def _flush(self) -> None:
        """Group commit: fsync the turn's journal records, then delete the photos they
        allow deleting and send the turn's frames (what a failed send makes the core
        do is committed and sent the same way)."""
        while self._outbox or self.journal.unsynced:
            try:
                self.journal.sync()
            except JournalError as exc:
                event(log, "journal_sync_failed", logging.CRITICAL, error=str(exc),
                      unsent=len(self._outbox),
                      action="stopping without sending; the next start replays the journal")
                self._outbox.clear()
                self._failed = True
                return
            self.storage.run_deferred_deletes()
            outs, self._outbox = self._outbox, []
            self._send(outs)

    def _send(self, outs: list[Out]) -> None:
        for out in outs:
            try:
                self.sockets[out.channel].send_multipart([out.peer, out.frame], zmq.NOBLOCK)
            except zmq.ZMQError as exc:
                if out.job_id is None:
                    event(log, "send_failed", logging.DEBUG, channel=out.channel, error=str(exc))
                else:
                    self._guarded(self.core.undeliverable, out, time.time())

    def _compact(self) -> None:
        try:
            self.journal.compact(self.core.book.snapshot())
        except JournalError as exc:
            event(log, "journal_compaction_failed", logging.ERROR, error=str(exc))

    def _reload_keys(self) -> None:
        self._reload = False
        if self.auth is None:
            event(log, "curve_reload_skipped", reason="CURVE is not enabled")
            return
        keys_dir = self._curve_paths()[0]
        try:
            count = curve.reload_keys(self.auth, keys_dir)
        except (OSError, ValueError) as exc:
            event(log, "curve_reload_failed", logging.ERROR, error=str(exc))
            return
        event(log, "curve_keys_reloaded", keys=count, authorized_keys_dir=str(keys_dir))

    def _shutdown(self) -> None:
        """Answer requests still waiting (submits get ``shutting down``), then close."""
        self.core.stopping = True
        self._drain(FRONT, self.sockets[FRONT])
        self._flush()
        event(log, "broker_stopping", queued=len(self.core.book.queue),
              in_flight=len(self.core.book.in_flight), pending_handoff=len(self.core.book.pending))
        self.close()

    def close(self) -> None:
        """Close the journal, the sockets, the authenticator and the context."""
        self.journal.close()
        for sock in self.sockets.values():
            sock.close()
        if self.auth is not None:
            self.auth.stop()
        self.ctx.term()


def _is_local(endpoint: str) -> bool:
    """True for endpoints other hosts cannot reach (loopback TCP, ipc, inproc)."""
    return endpoint.startswith(("ipc://", "inproc://", "tcp://127.", "tcp://localhost:",
                                "tcp://[::1]:"))


def serve(settings: Settings) -> int:
    """Run the broker until SIGTERM/SIGINT; returns the process exit code."""
    try:
        server = BrokerServer(settings)
    except (JournalError, curve.CurveError, zmq.ZMQError) as exc:
        error = f"cannot bind: {exc}" if isinstance(exc, zmq.ZMQError) else str(exc)
        event(log, "broker_start_failed", logging.CRITICAL, error=error)
        return 2 if isinstance(exc, curve.CurveError) else 1
    signal.signal(signal.SIGTERM, server.request_stop)
    signal.signal(signal.SIGINT, server.request_stop)
    signal.signal(signal.SIGHUP, server.request_reload)
    code = server.run()
    event(log, "broker_stopped")
    return code
