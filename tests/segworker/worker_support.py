"""A fake engine, its process function and settings for the worker tests (the broker
they talk to is :class:`tests.support.stub_broker.StubBroker`)."""

from __future__ import annotations

import threading

import numpy as np

from common import wire
from common.config import Settings, load_settings
from segworker.engine import Engine, EngineError, NoPersonError
from tests.support.images import encode

MASK = b"\x89PNG\r\n\x1a\nfake"


def png_photo(width: int = 64, height: int = 48) -> bytes:
    return encode(np.full((height, width, 3), 120, np.uint8), "PNG")


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
