"""The Tornado application: URL specs, collaborators, and the HTTP server's limits.

:func:`make_app` wires handlers to their collaborators through
``initialize(**kwargs)``; it opens nothing itself, so tests build it around a
fake broker. :func:`http_server_options` holds the connection limits that
keep slow or oversized clients from tying the server up.
"""

from __future__ import annotations

import logging
from concurrent.futures import Executor
from typing import Any

from tornado.web import Application, RequestHandler, url

from common.config import ServerSettings
from common.logs import event
from frontend.admission import Admission
from frontend.base import NotFoundHandler
from frontend.broker_client import BrokerClient
from frontend.inflight import InFlight
from frontend.metrics import FrontendCounters
from frontend.openapi import build_document
from frontend.photo_store import PhotoStore
from frontend.process_handler import ProcessHandler
from frontend.status_handlers import (
    HealthHandler,
    JobHandler,
    MetricsHandler,
    OpenApiHandler,
    StatsHandler,
)

log = logging.getLogger(__name__)

#: Seconds a client may take to send a whole request body (a 20 MB photo at ~1.5 Mbit/s).
BODY_TIMEOUT_S = 120.0

#: Seconds an idle keep-alive connection (or one still sending headers) is kept open.
IDLE_CONNECTION_TIMEOUT_S = 60.0

#: Largest request header block, in bytes.
MAX_HEADER_BYTES = 64 * 1024


def make_app(server: ServerSettings, broker: BrokerClient, store: PhotoStore,
             executor: Executor, inflight: InFlight | None = None) -> Application:
    """The application for ``server``'s settings.

    ``broker`` answers submit/job/stats, ``store`` writes photos, ``executor``
    runs photo decoding and disk writes off the IOLoop, ``inflight`` counts
    requests for the shutdown drain.
    """
    inflight = inflight or InFlight()
    common = {"inflight": inflight}
    with_broker = {**common, "broker": broker}
    counters = FrontendCounters()
    admission = Admission(broker.room)
    handlers = [
        url(r"/process", ProcessHandler, {**with_broker, "store": store, "executor": executor,
                                          "server": server, "admission": admission,
                                          "counters": counters}),
        url(r"/health", HealthHandler, with_broker),
        url(r"/stats", StatsHandler, with_broker),
        url(r"/metrics", MetricsHandler, {**with_broker, "counters": counters}),
        url(r"/jobs/([^/]*)", JobHandler, {**with_broker, "api_key": server.api_key,
                                            "temp_folder": store.directory.parent}),
        url(r"/openapi.json", OpenApiHandler, {**common, "document": build_document(server)}),
    ]
    return Application(handlers, default_handler_class=NotFoundHandler,
                       default_handler_args=common, log_function=log_request,
                       inflight=inflight)


def http_server_options(server: ServerSettings) -> dict[str, Any]:
    """Keyword arguments for ``tornado.httpserver.HTTPServer``.

    ``max_body_size`` applies to every endpoint but POST /process, which
    enforces ``max_upload_bytes`` itself to answer 413 with a JSON body.
    """
    return {"max_body_size": server.max_upload_bytes, "body_timeout": BODY_TIMEOUT_S,
            "idle_connection_timeout": IDLE_CONNECTION_TIMEOUT_S,
            "max_header_size": MAX_HEADER_BYTES, "xheaders": False}


def log_request(handler: RequestHandler) -> None:
    """One JSON line per finished request (never headers, so never the API key)."""
    status = handler.get_status()
    level = logging.INFO if status < 500 else logging.WARNING
    event(log, "http_request", level, method=handler.request.method,
          path=handler.request.path[:200], status=status,
          ms=round(1000.0 * handler.request.request_time(), 1))
