"""The worker process around an engine: a Paranoid Pirate worker of the broker.

One DEALER socket to ``broker.worker_connect`` (a :class:`common.broker_link.BrokerLink`,
which also replaces it when the broker falls silent). The worker sends ``ready``
when idle and ``heartbeat`` every ``broker.heartbeat_interval_s`` (also while
busy: inference runs in a separate thread, so a long forward pass never looks
like a dead worker). It runs one job at a time and answers each with
``result`` (mask PNGs by name) or ``failed`` (reason, retryable).

If the broker is silent for ``broker.peer_expiry_s`` the link connects a
fresh socket, waiting a little longer each time (up to
:data:`MAX_BACKOFF_FACTOR` heartbeat intervals), and the worker announces itself again:
``ready`` when idle, a busy ``heartbeat`` when a job is still running (its
result is sent when it is done).

Stopping (:meth:`Worker.request_stop`, wired to SIGTERM): no new work; a
running job gets up to ``drain_s`` seconds to finish, else it is handed back
(``failed`` retryable, reason ``worker_shutdown``); then ``disconnect``.

Failure reasons: ``bad_image`` (not a photo we accept), ``image_missing``
(no such file / no inline bytes), ``no_person`` and other engine reasons,
``image_unreadable`` and ``worker_error`` (unexpected; retryable).
"""

from __future__ import annotations

import logging
import os
import queue
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import zmq

from common import curve, wire
from common.broker_link import BrokerLink
from common.config import RefineSettings, Settings
from common.logs import event
from common.photo import PhotoError, decode_rgb
from segworker.engine import Engine, EngineError
from segworker.pipeline import reported_stages

#: Longest SIGTERM drain, in seconds, before a running job is handed back
#: (kept below supervisord's ``stopwaitsecs``).
DRAIN_TIMEOUT_S = 20.0

#: Longest single poll, in milliseconds, so a stop request is noticed promptly.
MAX_POLL_MS = 200

#: Cap of the reconnect back-off, in heartbeat intervals.
MAX_BACKOFF_FACTOR = 32

#: How long final messages may take to leave at exit, in milliseconds.
LINGER_MS = 2000

#: ``process(engine, rgb, refine_settings, write_seg_map) -> {mask name: PNG bytes}``.
ProcessFn = Callable[[Engine, np.ndarray, RefineSettings, bool], dict[str, bytes]]

log = logging.getLogger("segworker")


@dataclass
class Outcome:
    """A finished job: the message to send (``result`` or ``failed``) and its fields."""

    msg_type: str
    fields: dict[str, Any] = field(default_factory=dict)


class _Refused(Exception):
    def __init__(self, reason: str, detail: str, retryable: bool = False) -> None:
        super().__init__(detail)
        self.reason, self.retryable = reason, retryable


def run_job(job: dict[str, Any], image: bytes | None, engine: Engine, process: ProcessFn,
            settings: Settings) -> Outcome:
    """Decode and segment one photo; every failure becomes a ``failed`` outcome."""
    ids = {"job_id": job["job_id"], "attempt": job["attempt"]}
    started = time.perf_counter()
    try:
        data = image if image is not None else _read_photo(job, settings.workers.inline_images)
        rgb = decode_rgb(data, settings.server.max_image_pixels)
        decoded = time.perf_counter()
        seg = settings.segmentation
        masks = process(engine, rgb, seg.refine, seg.write_seg_map)
        decode_ms = round((decoded - started) * 1000, 1)
        # process_photo attaches its stage times (MaskFiles); a bare dict has none
        stages = reported_stages(getattr(masks, "timings_ms", {}))
        timings = {"decode_ms": decode_ms,
                   "process_ms": round((time.perf_counter() - decoded) * 1000, 1),
                   "stages_ms": {"decode": decode_ms, **stages}}
        return Outcome("result", {**ids, "masks": masks, "engine": engine.name, "timings": timings})
    except PhotoError as exc:
        return _failed(ids, "bad_image", str(exc), False)
    except _Refused as exc:
        return _failed(ids, exc.reason, str(exc), exc.retryable)
    except EngineError as exc:
        return _failed(ids, exc.reason, str(exc), exc.retryable)
    except Exception as exc:  # noqa: BLE001 - a bug or resource problem: never lose the job
        event(log, "job_error", logging.ERROR, exc_info=True, job_id=job["job_id"])
        return _failed(ids, "worker_error", f"{type(exc).__name__}: {exc}", True)


def _failed(ids: dict[str, Any], reason: str, detail: str, retryable: bool) -> Outcome:
    return Outcome("failed", {**ids, "reason": reason, "detail": detail, "retryable": retryable})


def _read_photo(job: dict[str, Any], inline_images: bool) -> bytes:
    if inline_images:
        raise _Refused("image_missing", "the broker sent no photo bytes (it could not read the "
                       "file, or this worker should not have WORKER_INLINE_IMAGES set)")
    path = job["image_path"]
    if not isinstance(path, str) or not os.path.isabs(path):
        raise _Refused("image_missing", f"image_path {path!r} is not an absolute path")
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        raise _Refused("image_missing", f"the photo {path} does not exist") from None
    except OSError as exc:
        raise _Refused("image_unreadable", f"cannot read {path}: {exc.strerror}", True) from None


class InferenceThread:
    """Runs one job at a time off the socket thread; wakes the loop when done.

    Completion is signalled over an inproc PAIR socket (``wake_socket``), so
    the main loop polls it alongside the broker socket.
    """

    def __init__(self, ctx: zmq.Context, work: Callable[[dict, bytes | None], Outcome]) -> None:
        self._work, self._ctx = work, ctx
        self._address = f"inproc://segworker-wake-{id(self)}"
        self.wake_socket = ctx.socket(zmq.PAIR)
        self.wake_socket.bind(self._address)
        self._jobs: queue.Queue = queue.Queue()
        self._done: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._loop, name="inference", daemon=True)
        self._thread.start()

    def submit(self, job: dict[str, Any], image: bytes | None) -> None:
        self._jobs.put((job, image))

    def take(self) -> Outcome:
        """The finished outcome (call after the wake socket is readable)."""
        self.wake_socket.recv()
        return self._done.get_nowait()

    def _loop(self) -> None:
        wake = self._ctx.socket(zmq.PAIR)
        wake.connect(self._address)
        try:
            while (item := self._jobs.get()) is not None:
                self._done.put(self._work(*item))
                wake.send(b"")
        except zmq.ZMQError:
            pass  # the loop is gone (a job handed back at shutdown finished late)
        finally:
            wake.close(linger=0)

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def stop(self, timeout: float = 1.0) -> bool:
        """Ask the thread to end; True when it has (False: a job is still running)."""
        self._jobs.put(None)
        self._thread.join(timeout)
        self.wake_socket.close(linger=0)
        return not self._thread.is_alive()


#: Engine facts a worker reports in its WorkerInfo (strings; absent when the engine has none).
RUNTIME_INFO = ("precision", "backend", "precision_because", "backend_because")


class Worker:
    """The broker-facing loop. ``engine`` and ``process`` are injected (tests use fakes)."""

    def __init__(self, settings: Settings, engine: Engine, process: ProcessFn, index: int = 0,
                 ctx: zmq.Context | None = None, drain_s: float = DRAIN_TIMEOUT_S) -> None:
        self.settings, self.engine, self.index, self.drain_s = settings, engine, index, drain_s
        self.name = f"{socket.gethostname()}-{os.getpid()}-{index}"
        self.ctx = ctx or zmq.Context.instance()
        self.interval = settings.broker.heartbeat_interval_s
        self.link = BrokerLink(self.ctx, settings.broker.worker_connect,
                               settings.broker.peer_expiry_s, patience_s=self.interval,
                               max_patience_s=self.interval * MAX_BACKOFF_FACTOR,
                               keys=self._load_keys())
        self.runner = InferenceThread(
            self.ctx, lambda job, image: run_job(job, image, engine, process, settings))
        self.current: dict[str, Any] | None = None   #: {job_id, attempt} of the running job
        self.abandoned = False   #: a job was handed back while still running
        self._stop_requested = False
        self._drain_deadline: float | None = None
        facts = engine.describe()
        self._device = str(facts.get("device", settings.workers.device))
        #: How the engine runs and why (precision, backend), for /health and /metrics'
        #: info metric; only what the engine says (the pose engine runs no torch).
        self._runtime = {k: str(facts[k]) for k in RUNTIME_INFO if facts.get(k) is not None}

    def _load_keys(self) -> curve.ClientKeys | None:
        w = self.settings.workers
        if not w.curve_server_key_file:
            return None
        assert w.curve_secret_key_file, "load_settings requires it with the server key file"
        public, secret = curve.load_secret(self.settings.resolve(w.curve_secret_key_file))
        return public, secret, curve.load_public(self.settings.resolve(w.curve_server_key_file))

    def info(self) -> dict[str, Any]:
        """The WorkerInfo sent with ``ready`` and ``heartbeat``."""
        return {"id": self.name, "host": socket.gethostname(), "pid": os.getpid(),
                "index": self.index, "engine": self.engine.name, "model_loaded": True,
                "device": self._device, "inline_images": self.settings.workers.inline_images,
                "busy": self.current is not None,
                "job_id": None if self.current is None else self.current["job_id"],
                **self._runtime}

    def request_stop(self, *_: Any) -> None:
        """Stop taking work and leave (safe to call from a signal handler)."""
        self._stop_requested = True

    # -- socket ----------------------------------------------------------
    def _announce(self) -> None:
        """Tell a (re)connected broker who we are: ``ready``, or busy with a job."""
        self._send("ready" if self.current is None else "heartbeat", worker=self.info())

    def _send(self, msg_type: str, **fields: Any) -> None:
        if not self.link.send(wire.encode(msg_type, **fields)):
            event(log, "send_dropped", logging.WARNING, type=msg_type, job_id=fields.get("job_id"))

    # -- loop ------------------------------------------------------------
    def run(self) -> int:
        """Serve jobs until stopped; returns the exit code (0)."""
        event(log, "worker_started", worker=self.name, engine=self.engine.name,
              device=self._device, broker=self.settings.broker.worker_connect,
              curve=self.link.keys is not None, inline_images=self.settings.workers.inline_images)
        self.link.connect()
        self._announce()
        next_beat = time.monotonic() + self.interval
        while not self._finished_draining():
            wait_ms = (next_beat - time.monotonic()) * 1000
            messages, woke = self.link.poll(int(min(MAX_POLL_MS, max(0.0, wait_ms))),
                                            self.runner.wake_socket)
            if woke:
                self._finish(self.runner.take())
            for msg in messages:
                self._on_message(msg)
            now = time.monotonic()
            if now >= next_beat:
                self._send("heartbeat", worker=self.info())
                next_beat = now + self.interval
            if self.link.check(now):
                self._announce()
        self._leave()
        return 0

    def _on_message(self, msg: dict[str, Any]) -> None:
        if msg["type"] == "job" and isinstance(msg.get("job"), dict):
            self._start(msg["job"], msg.get("image"))
        elif msg["type"] != "heartbeat":
            event(log, "invalid_frame", logging.WARNING, error=f"unexpected {msg['type']!r}")

    def _start(self, job: dict[str, Any], image: Any) -> None:
        ids = {"job_id": job["job_id"], "attempt": job["attempt"]}
        if self.current is not None or self._stop_requested:
            reason = "worker_shutdown" if self._stop_requested else "worker_busy"
            event(log, "job_refused", logging.WARNING, reason=reason, **ids)
            self._send("failed", **ids, reason=reason, detail="worker cannot take a job now",
                       retryable=True)
            return
        self.current = ids
        event(log, "job_started", worker=self.name, inline=image is not None, **ids)
        self.runner.submit(job, image if isinstance(image, bytes) else None)

    def _finish(self, outcome: Outcome) -> None:
        if self.current is None or self.current["job_id"] != outcome.fields["job_id"]:
            return  # handed back already (drain timeout)
        self.current = None
        self._send(outcome.msg_type, **outcome.fields)
        if outcome.msg_type == "result":
            event(log, "job_done", job_id=outcome.fields["job_id"], worker=self.name,
                  timings=outcome.fields["timings"])
        else:
            event(log, "job_failed", logging.WARNING, job_id=outcome.fields["job_id"],
                  worker=self.name, reason=outcome.fields["reason"],
                  retryable=outcome.fields["retryable"], detail=outcome.fields["detail"])
        if not self._stop_requested:
            self._send("ready", worker=self.info())

    def _finished_draining(self) -> bool:
        """While stopping: True once idle, or once the drain bound has passed
        (the running job is then handed back)."""
        if not self._stop_requested:
            return False
        if self._drain_deadline is None:
            self._drain_deadline = time.monotonic() + self.drain_s
            event(log, "worker_draining", worker=self.name,
                  job_id=(self.current or {}).get("job_id"), drain_s=self.drain_s)
        if self.current is None:
            return True
        if time.monotonic() < self._drain_deadline:
            return False
        event(log, "job_handed_back", logging.WARNING, worker=self.name, **self.current)
        self._send("failed", **self.current, reason="worker_shutdown",
                   detail=f"the worker stopped before the job finished ({self.drain_s:g} s drain)",
                   retryable=True)
        self.current, self.abandoned = None, True
        return True

    def _leave(self) -> None:
        self._send("disconnect")
        self.link.close(linger_ms=LINGER_MS)
        stopped = self.runner.stop(timeout=0.0 if self.abandoned else 1.0)
        event(log, "worker_stopped", worker=self.name, inference_thread_ended=stopped)
