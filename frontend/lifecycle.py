"""Running the front end: start, serve, and stop gracefully on SIGTERM / SIGINT.

On a stop signal the server stops accepting connections, lets the requests in
progress finish (at most :data:`DRAIN_TIMEOUT_S`), closes the remaining idle
connections and the broker socket, and returns.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from concurrent.futures import ThreadPoolExecutor

from tornado.httpserver import HTTPServer

from common.config import Settings
from common.logs import event
from frontend.app import http_server_options, make_app
from frontend.broker_client import BrokerClient
from frontend.inflight import InFlight
from frontend.photo_store import PhotoStore
from frontend.uploads import warm_up

log = logging.getLogger(__name__)

#: Seconds a stopping server waits for requests in progress (keep below supervisord's
#: stopwaitsecs).
DRAIN_TIMEOUT_S = 25.0

#: Connections the kernel queues for accept(). Tornado's default, 128, is less than
#: a burst of simultaneous uploads: the connects beyond it lose their SYN and the
#: client resends it only after TCP's one-second initial timeout (the kernel caps
#: the value at net.core.somaxconn).
LISTEN_BACKLOG = 1024

#: Threads that decode photos and write them to disk (each decode may hold
#: max_image_pixels * 3 bytes).
PHOTO_THREADS = 2


async def serve(settings: Settings) -> None:
    """Serve HTTP on ``server.host:server.port`` until SIGTERM or SIGINT."""
    server = settings.server
    executor = ThreadPoolExecutor(PHOTO_THREADS, thread_name_prefix="photo")
    broker = BrokerClient(settings.broker.frontend_endpoint, server.broker_timeout_s)
    store = PhotoStore(settings.temp_folder)
    inflight = InFlight()
    warm_up()
    app = make_app(server, broker, store, executor, inflight)
    http = HTTPServer(app, **http_server_options(server))
    broker.start()
    http.listen(server.port, server.host, backlog=LISTEN_BACKLOG)
    event(log, "frontend_started", host=server.host, port=server.port,
          broker=settings.broker.frontend_endpoint, incoming=str(store.directory),
          api_key_required=server.api_key is not None)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    event(log, "frontend_stopping", in_flight=inflight.count)
    http.stop()
    drained = await inflight.wait_idle(DRAIN_TIMEOUT_S)
    await http.close_all_connections()
    await broker.close()
    executor.shutdown(wait=True)
    event(log, "frontend_stopped", drained=drained, abandoned=inflight.count)
