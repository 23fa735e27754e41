"""FrontendTestCase: the real application on a free port, in front of a StubBroker."""

from __future__ import annotations

import asyncio
import dataclasses
import http.client
import json
import logging
import shutil
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, ClassVar

from tornado.httpclient import HTTPRequest, HTTPResponse
from tornado.testing import AsyncHTTPTestCase

from common.config import ServerSettings
from frontend.app import http_server_options, make_app
from frontend.broker_client import BrokerClient
from frontend.photo_store import INCOMING_DIR, PhotoStore
from tests.support import forms
from tests.support.procs import free_port
from tests.support.stub_broker import FRONT, StubBroker


class EventCapture(logging.Handler):
    """Collects the structured events logged under the ``frontend`` logger."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.events: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.events.append({"event": getattr(record, "event", record.getMessage()),
                            "level": record.levelname, **getattr(record, "fields", {})})

    def named(self, name: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["event"] == name]


class FrontendTestCase(AsyncHTTPTestCase):
    """Subclasses tune :attr:`settings_overrides`, :attr:`broker_up`, :attr:`queue_max`,
    :attr:`late_grace_s` and :attr:`broker_timeout_s` (short only where the broker is meant
    to stay silent, generous elsewhere so a loaded machine does not turn replies into
    timeouts).

    :attr:`stub` is the broker: a healthy one, with worker ``w0`` (engine ``schp``, model
    loaded, taking no jobs, so accepted jobs stay queued) and an uploader connected.
    """

    settings_overrides: ClassVar[dict[str, Any]] = {}
    broker_up = True
    queue_max = 100
    late_grace_s = 30.0
    broker_timeout_s = 3.0

    def setUp(self) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="frontend-test-"))
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.stub = StubBroker(self.tmp, max_size=self.queue_max)
        self.stub.add_worker("w0", takes_jobs=False, engine="schp")
        self.stub.add_uploader()
        if self.broker_up:
            self.stub.start()
            self.addCleanup(self.stub.close)
        self.capture = EventCapture()
        logger = logging.getLogger("frontend")
        old_level = logger.level
        logger.setLevel(logging.DEBUG)
        logger.addHandler(self.capture)
        self.addCleanup(logger.setLevel, old_level)
        self.addCleanup(logger.removeHandler, self.capture)
        super().setUp()

    def get_app(self):
        self.server = dataclasses.replace(ServerSettings(host="127.0.0.1",
                                                         broker_timeout_s=self.broker_timeout_s),
                                          **self.settings_overrides)
        endpoint = self.stub.front_endpoint if self.broker_up else f"tcp://127.0.0.1:{free_port()}"
        self.broker = BrokerClient(endpoint, self.server.broker_timeout_s, self.late_grace_s)
        self.store = PhotoStore(self.tmp)
        self.executor = ThreadPoolExecutor(2)
        return make_app(self.server, self.broker, self.store, self.executor)

    def get_httpserver_options(self) -> dict[str, Any]:
        return http_server_options(self.server)

    def tearDown(self) -> None:
        self.io_loop.run_sync(self.broker.close)
        super().tearDown()
        self.executor.shutdown(wait=True)

    # -- helpers -------------------------------------------------------------

    def sent(self, msg_type: str | None = None) -> list[dict[str, Any]]:
        """The requests the front end sent the broker (of ``msg_type``), oldest first."""
        return self.stub.messages(FRONT, msg_type)

    def sent_types(self) -> list[str]:
        return [m["type"] for m in self.sent()]

    def post_form(self, parts: list[bytes], headers: dict[str, str] | None = None,
                  **kwargs: Any) -> HTTPResponse:
        all_headers = {"Content-Type": forms.content_type(), **(headers or {})}
        return self.fetch("/process", method="POST", body=forms.body(*parts),
                          headers=all_headers, raise_error=False, **kwargs)

    def post_chunked(self, parts: list[bytes], chunk: int) -> HTTPResponse:
        """POST /process with the form sent in ``chunk``-byte pieces (chunked encoding)."""
        data = forms.body(*parts)

        async def producer(write):
            for i in range(0, len(data), chunk):
                await write(data[i:i + chunk])
        # Tornado's stub wants a Future back; it awaits a coroutine just the same.
        request = HTTPRequest(self.get_url("/process"), method="POST",
                              body_producer=producer,  # type: ignore[arg-type]
                              headers={"Content-Type": forms.content_type()})
        return self.io_loop.run_sync(lambda: self.http_client.fetch(request, raise_error=False))

    def json_of(self, response: HTTPResponse) -> dict[str, Any]:
        self.assertTrue(response.headers.get("Content-Type", "").startswith("application/json"),
                        response.headers.get("Content-Type"))
        return json.loads(response.body)

    def assert_error(self, response: HTTPResponse, status: int) -> dict[str, Any]:
        """The response is ``status`` with a JSON ``{"error": <non-empty text>}`` body."""
        self.assertEqual(response.code, status, response.body[:300])
        self.assertEqual(response.reason, http.client.responses[status])
        body = self.json_of(response)
        self.assertEqual(set(body), {"error"})
        self.assertIsInstance(body["error"], str)
        self.assertTrue(body["error"])
        return body

    def incoming(self) -> list[Path]:
        folder = self.tmp / INCOMING_DIR
        return sorted(folder.iterdir()) if folder.is_dir() else []

    def wait_until(self, predicate: Callable[[], bool], timeout: float = 5.0) -> None:
        """Run the IOLoop until ``predicate()`` holds; fail after ``timeout`` seconds."""
        async def poll() -> None:
            deadline = time.monotonic() + timeout
            while not predicate():
                if time.monotonic() > deadline:
                    raise AssertionError("condition not reached in time")
                await asyncio.sleep(0.02)
        self.io_loop.run_sync(poll, timeout=timeout + 1)
