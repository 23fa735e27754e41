"""A scriptable stand-in for the broker's front-end ROUTER socket.

It runs in a thread, binds ``tcp://127.0.0.1:<free port>`` and answers
``submit`` / ``job`` / ``stats`` per :mod:`common.wire`:

- ``outcome`` ``"auto"`` (default): accepted, or ``duplicate`` for a job_id it
  already holds; any other value (``"queue_full"``, ``"error"``) is sent as is;
- ``silent``: requests are held unanswered until :meth:`release` sends them
  (a hung broker, and late replies);
- ``stats``: the map returned by ``stats``; ``jobs``: records by job_id.

Everything received is appended to ``received``. Use it as a context manager.
"""

from __future__ import annotations

import queue
import threading
from typing import Any

import zmq

from common import wire
from tests.support.procs import free_port

#: Milliseconds the broker thread waits on its socket before checking commands.
POLL_MS = 10


def default_stats() -> dict[str, Any]:
    return {"queue_max": 100, "queue_current": 0, "workers": 1, "jobs_processed": 3,
            "uptime_sec": 12, "in_flight": 0, "failed": 0, "delivered": 3, "retried": 0,
            "dead_lettered": 0,
            "per_worker": [{"id": "w0", "engine": "schp", "model_loaded": True, "jobs": 3}]}


class FakeBroker:
    """See the module docstring."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.endpoint = f"tcp://127.0.0.1:{self.port}"
        self.outcome = "auto"
        self.silent = False
        self.stats: dict[str, Any] = default_stats()
        self.jobs: dict[str, dict[str, Any]] = {}
        self.received: list[dict[str, Any]] = []
        self._held: list[tuple[bytes, dict[str, Any]]] = []
        self._commands: queue.Queue = queue.Queue()
        self._stop = threading.Event()
        self._bound = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fake-broker", daemon=True)

    def __enter__(self) -> "FakeBroker":
        self._thread.start()
        if not self._bound.wait(5):
            raise RuntimeError("fake broker did not bind")
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(5)

    def release(self, outcome: str | None = None) -> None:
        """Answer every held request now (submits with ``outcome`` if given)."""
        self._commands.put(("release", outcome))

    def submits(self) -> list[dict[str, Any]]:
        return [m for m in self.received if m["type"] == "submit"]

    def _run(self) -> None:
        ctx = zmq.Context()
        sock = ctx.socket(zmq.ROUTER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.bind(self.endpoint)
        self._bound.set()
        try:
            while not self._stop.is_set():
                self._run_commands(sock)
                if sock.poll(POLL_MS):
                    peer, frame = sock.recv_multipart()
                    self._handle(sock, peer, wire.decode(frame))
        finally:
            sock.close(0)
            ctx.term()

    def _run_commands(self, sock: zmq.Socket) -> None:
        while not self._commands.empty():
            _, outcome = self._commands.get()
            held, self._held = self._held, []
            for peer, msg in held:
                sock.send_multipart([peer, self._reply(msg, outcome)])

    def _handle(self, sock: zmq.Socket, peer: bytes, msg: dict[str, Any]) -> None:
        self.received.append(msg)
        if self.silent:
            self._held.append((peer, msg))
            return
        sock.send_multipart([peer, self._reply(msg, None)])

    def _reply(self, msg: dict[str, Any], forced: str | None) -> bytes:
        if msg["type"] == "stats":
            return wire.encode("stats", req=msg["req"], stats=self.stats)
        if msg["type"] == "job":
            return wire.encode("job", req=msg["req"], record=self.jobs.get(msg["job_id"]))
        if msg["type"] == "room":
            return wire.encode("room", req=msg["req"], open=self.outcome != "queue_full",
                               queue_size=len(self.jobs), queue_max=100)
        job = msg["job"]
        known = self.jobs.get(job["job_id"])
        outcome = forced or self.outcome
        if outcome == "auto":
            outcome = "duplicate" if known else "accepted"
        if outcome == "accepted":
            self.jobs[job["job_id"]] = {"job_id": job["job_id"], "state": "queued",
                                        "submitted_at": job["submitted_at"],
                                        "image_path": job["image_path"]}
        errors = {"error": "journal write failed",
                  "no_worker": "no segmentation worker has been alive for 75 s"}
        extra = {"error": errors[outcome]} if outcome in errors else {}
        return wire.encode("submitted", req=msg["req"], outcome=outcome,
                           state=(known or {}).get("state", "queued"),
                           queue_size=len(self.jobs), queue_max=100, **extra)
