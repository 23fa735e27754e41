"""A stand-in broker (ROUTER socket) and a fake engine for the worker tests."""

from __future__ import annotations

import io
import threading
import time
from typing import Any

import numpy as np
import zmq
from PIL import Image

from common import wire
from common.config import Settings, load_settings
from segworker.engine import Engine, EngineError, NoPersonError
from tests.support import procs

MASK = b"\x89PNG\r\n\x1a\nfake"


def png_photo(width: int = 64, height: int = 48) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((height, width, 3), 120, np.uint8)).save(buf, "PNG")
    return buf.getvalue()


class FakeEngine(Engine):
    name = "fake"

    def segment(self, rgb):  # never called: the injected process function does the work
        raise AssertionError("not used")

    def describe(self) -> dict:
        return {"engine": "fake", "device": "cpu"}


class FakeProcess:
    """The injected ``process`` function; behaviour is chosen by the photo's width."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.release.set()
        self.started = threading.Event()
        self.shapes: list[tuple[int, ...]] = []

    def __call__(self, engine, rgb, refine, write_seg_map):
        self.shapes.append(rgb.shape)
        self.started.set()
        self.release.wait(30)
        width = rgb.shape[1]
        if width == 17:
            raise NoPersonError("nobody there")
        if width == 18:
            raise EngineError("model says no", reason="engine_exploded")
        if width == 19:
            raise RuntimeError("CUDA out of memory")
        return {wire.UPPER: MASK, wire.LOWER: MASK}


def worker_settings(endpoint: str, **env: str) -> Settings:
    return load_settings(environ={"BROKER_WORKER_ENDPOINT": endpoint,
                                  "HEARTBEAT_INTERVAL_S": "0.1", **env})


class FakeBroker:
    """A ROUTER on a free loopback port that records what workers send."""

    def __init__(self, ctx: zmq.Context, port: int | None = None) -> None:
        self.port = port or procs.free_port()
        self.endpoint = f"tcp://127.0.0.1:{self.port}"
        self.sock = ctx.socket(zmq.ROUTER)
        self.sock.linger = 0
        self.sock.bind(self.endpoint)

    def recv(self, timeout: float = 10.0, skip_heartbeats: bool = True) -> tuple[bytes, dict]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.sock.poll(50):
                peer, frame = self.sock.recv_multipart()
                msg = wire.decode(frame)
                if skip_heartbeats and msg["type"] == "heartbeat":
                    continue
                return peer, msg
        raise AssertionError(f"no message within {timeout}s")

    def send(self, peer: bytes, msg_type: str, **fields: Any) -> None:
        self.sock.send_multipart([peer, wire.encode(msg_type, **fields)])

    def send_job(self, peer: bytes, job_id: str, path: str = "/nonexistent/x.png",
                 image: bytes | None = None, attempt: int = 0) -> None:
        job = wire.make_job(job_id, "user-1", "qwen", path, time.time(), attempt)
        self.send(peer, "job", job=job, image=image, deadline_s=30.0)

    def close(self) -> None:
        self.sock.close()
