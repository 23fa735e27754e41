"""The front end served from a background thread, for clients that block (schemathesis)."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tornado.httpserver import HTTPServer

from common.config import ServerSettings
from frontend.app import http_server_options, make_app
from frontend.broker_client import BrokerClient
from frontend.photo_store import PhotoStore
from tests.support.procs import free_port


class LiveFrontend:
    """``with LiveFrontend(server, endpoint, folder) as url:`` serves until the block ends."""

    def __init__(self, server: ServerSettings, broker_endpoint: str, temp_folder: Path) -> None:
        self.server, self.endpoint, self.folder = server, broker_endpoint, temp_folder
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._run, name="live-frontend", daemon=True)

    def __enter__(self) -> str:
        self._thread.start()
        if not self._started.wait(10):
            raise RuntimeError("live front end did not start")
        return self.url

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._serve())
        self._loop.close()

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        executor = ThreadPoolExecutor(2)
        broker = BrokerClient(self.endpoint, self.server.broker_timeout_s)
        app = make_app(self.server, broker, PhotoStore(self.folder), executor)
        http = HTTPServer(app, **http_server_options(self.server))
        http.listen(self.port, "127.0.0.1")
        self._started.set()
        await self._stop.wait()
        http.stop()
        await http.close_all_connections()
        await broker.close()
        executor.shutdown(wait=True)
