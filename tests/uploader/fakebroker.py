"""A fake broker for uploader tests: a ROUTER bound on 127.0.0.1 that the
uploader connects to, run by a background thread.

It records every message the uploader sends, sends heartbeats to the peer it
knows, and sends ``deliver`` messages on request. ``down()`` closes the
socket (the broker "crashes"); ``up()`` binds a fresh one on the same port.
"""

from __future__ import annotations

import threading
from collections import deque
import time
from typing import Any, Callable

import zmq

from common.wire import decode, encode
from tests.support.procs import free_port, wait_for


class FakeBroker:
    def __init__(self, heartbeat_s: float = 0.2):
        self.port = free_port()
        self.endpoint = f"tcp://127.0.0.1:{self.port}"
        self.heartbeat_s = heartbeat_s
        #: when True the broker stops sending heartbeats (a hung broker)
        self.silent = False
        self.received: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._outgoing: deque[bytes] = deque()
        self._want_up = threading.Event()
        self._stop = threading.Event()
        self._peer: bytes | None = None
        self._ctx = zmq.Context()
        self._thread = threading.Thread(target=self._run, daemon=True, name="fake-broker")

    def start(self) -> "FakeBroker":
        self._want_up.set()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._ctx.term()

    def down(self) -> None:
        """Close the ROUTER; the uploader loses its connection."""
        self._want_up.clear()
        wait_for(lambda: self._peer is None and not self._up, 5, what="broker down")

    def up(self) -> None:
        self._want_up.set()

    def deliver(self, job: dict[str, Any], masks: dict[str, str]) -> None:
        """Send a ``deliver`` to the uploader (once it has said hello)."""
        self._outgoing.append(encode("deliver", job=job, masks=masks))

    def messages(self, msg_type: str | None = None, job_id: str | None = None) -> list[dict]:
        with self._lock:
            return [m for m in self.received
                    if (msg_type is None or m["type"] == msg_type)
                    and (job_id is None or m.get("job_id") == job_id)]

    def states(self, job_id: str) -> list[dict]:
        return self.messages("state", job_id)

    def wait(self, predicate: Callable[[], Any], timeout: float = 15, what: str = "") -> None:
        wait_for(lambda: bool(predicate()), timeout, what=what or "fake broker condition")

    def wait_state(self, job_id: str, state: str, timeout: float = 15) -> dict:
        self.wait(lambda: [s for s in self.states(job_id) if s["state"] == state], timeout,
                  what=f"state {state} of {job_id}")
        return [s for s in self.states(job_id) if s["state"] == state][-1]

    # -- broker thread ---------------------------------------------------------------

    _up = False

    def _run(self) -> None:
        sock = None
        next_beat = 0.0
        while not self._stop.is_set():
            if self._want_up.is_set() and sock is None:
                sock = self._ctx.socket(zmq.ROUTER)
                sock.setsockopt(zmq.LINGER, 0)
                sock.setsockopt(zmq.ROUTER_MANDATORY, 1)  # never drop a deliver silently
                sock.bind(self.endpoint)
                self._up = True
            elif not self._want_up.is_set() and sock is not None:
                sock.close(linger=0)
                sock, self._peer, self._up = None, None, False
            if sock is None:
                time.sleep(0.02)
                continue
            if sock.poll(20):
                peer, frame = sock.recv_multipart()
                msg = decode(frame)
                self._peer = peer
                with self._lock:
                    self.received.append(msg)
            if self._peer is not None:
                self._send_pending(sock)
                if time.monotonic() >= next_beat and not self.silent:
                    next_beat = time.monotonic() + self.heartbeat_s
                    self._send(sock, encode("heartbeat"))
        if sock is not None:
            sock.close(linger=0)

    def _send_pending(self, sock: zmq.Socket) -> None:
        while self._outgoing:
            if not self._send(sock, self._outgoing[0]):
                return  # peer gone: keep it for the next peer
            self._outgoing.popleft()

    def _send(self, sock: zmq.Socket, frame: bytes) -> bool:
        try:
            sock.send_multipart([self._peer, frame], zmq.NOBLOCK)
            return True
        except zmq.ZMQError:  # EHOSTUNREACH (ROUTER_MANDATORY) or a full pipe
            self._peer = None
            return False
