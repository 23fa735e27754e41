"""Test peers of a real broker process: front end, workers and uploader as DEALER sockets."""

from __future__ import annotations

import itertools
import time
from pathlib import Path
from typing import Any

import zmq

from common import wire
from tests.support import procs

PNG = b"\x89PNG\r\n\x1a\n" + b"mask"


def broker_env(root: Path, **extra: str) -> dict[str, str]:
    """Environment for a broker on free loopback ports with its files under ``root``."""
    return {"TEMP_FOLDER": str(root / "tmp"), "STATE_DIR": str(root / "state"),
            "BROKER_FRONTEND_ENDPOINT": f"tcp://127.0.0.1:{procs.free_port()}",
            "BROKER_WORKER_BIND": f"tcp://127.0.0.1:{procs.free_port()}",
            "BROKER_UPLOADER_ENDPOINT": f"tcp://127.0.0.1:{procs.free_port()}",
            "HEARTBEAT_INTERVAL_S": "0.1", "LOG_LEVEL": "INFO", **extra}


class Peer:
    """A DEALER connected to one broker socket."""

    def __init__(self, ctx: zmq.Context, endpoint: str, keys: tuple | None = None) -> None:
        self.sock = ctx.socket(zmq.DEALER)
        self.sock.linger = 0
        if keys is not None:
            self.sock.curve_publickey, self.sock.curve_secretkey, self.sock.curve_serverkey = keys
        self.sock.connect(endpoint)

    def send(self, msg_type: str, **fields: Any) -> bool:
        """Send without blocking, as the real processes do: a DEALER with no
        connected peer (e.g. a CURVE handshake the broker refused) would block
        for ever. Returns False when the message could not be queued."""
        try:
            self.sock.send(wire.encode(msg_type, **fields), zmq.NOBLOCK)
        except zmq.Again:
            return False
        return True

    def recv(self, timeout: float = 10.0, skip_heartbeats: bool = True) -> dict[str, Any]:
        msg = self.poll(timeout, skip_heartbeats)
        if msg is None:
            raise AssertionError(f"no message within {timeout}s")
        return msg

    def poll(self, timeout: float, skip_heartbeats: bool = True) -> dict[str, Any] | None:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if not self.sock.poll(max(0, int(left * 1000))):
                return None
            msg = wire.decode(self.sock.recv())
            if not (skip_heartbeats and msg["type"] == "heartbeat"):
                return msg

    def close(self) -> None:
        self.sock.close()


class FrontEnd(Peer):
    """Request/reply with the broker, as the HTTP front end does."""

    _req = itertools.count(1)

    def request(self, msg_type: str, timeout: float = 10.0, **fields: Any) -> dict[str, Any]:
        reply = self._ask(msg_type, timeout, **fields)
        if reply is None:
            raise AssertionError(f"no {msg_type} reply within {timeout}s")
        return reply

    def _ask(self, msg_type: str, timeout: float, **fields: Any) -> dict[str, Any] | None:
        """Send one request; the reply with its ``req`` (late replies to older ones are skipped)."""
        req = next(self._req)
        self.send(msg_type, req=req, **fields)
        deadline = time.monotonic() + timeout
        while (reply := self.poll(max(0.0, deadline - time.monotonic()))) is not None:
            if reply.get("req") == req:
                return reply
        return None

    def submit(self, temp: Path, job_id: str, data: bytes | None = None) -> dict[str, Any]:
        photo = temp / "uploads" / f"{job_id}.jpg"
        photo.parent.mkdir(parents=True, exist_ok=True)
        photo.write_bytes(data or b"photo of " + job_id.encode())
        job = wire.make_job(job_id, "user-1", "qwen", str(photo), time.time())
        return self.request("submit", job=job)

    def stats(self) -> dict[str, Any]:
        return self.request("stats")["stats"]

    def record(self, job_id: str) -> dict[str, Any] | None:
        return self.request("job", job_id=job_id)["record"]

    def wait_up(self, timeout: float = 20.0) -> None:
        procs.wait_for(lambda: self.poll_stats() is not None, timeout, what="broker to answer")

    def poll_stats(self) -> dict[str, Any] | None:
        reply = self._ask("stats", 0.5)
        return None if reply is None else reply["stats"]


class FakeWorker(Peer):
    """A worker that does whatever the test says."""

    def __init__(self, ctx: zmq.Context, endpoint: str, name: str, keys: tuple | None = None,
                 inline: bool = False) -> None:
        super().__init__(ctx, endpoint, keys)
        self.name, self.inline = name, inline

    def info(self, busy: bool = False) -> dict[str, Any]:
        return {"id": self.name, "host": "test", "pid": 1, "index": 0, "engine": "fake",
                "model_loaded": True, "device": "cpu", "inline_images": self.inline,
                "busy": busy, "job_id": None}

    def ready(self) -> None:
        self.send("ready", worker=self.info())

    def heartbeat(self, busy: bool = True) -> None:
        self.send("heartbeat", worker=self.info(busy))

    def result(self, job: dict[str, Any]) -> None:
        self.send("result", job_id=job["job_id"], attempt=job["attempt"],
                  masks={wire.UPPER: PNG, wire.LOWER: PNG}, engine="fake", timings={})

    def next_job(self, timeout: float = 10.0, beat: bool = True) -> dict[str, Any]:
        """Wait for a dispatch, heartbeating meanwhile so the broker keeps us."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msg = self.poll(0.1)
            if msg is not None and msg["type"] == "job":
                return msg
            if beat:
                self.heartbeat(busy=False)
        raise AssertionError(f"{self.name}: no job within {timeout}s")
