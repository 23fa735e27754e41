"""JsonHandler: what every handler of the API shares.

- every error, whatever raised it, is answered by the one :meth:`write_error`
  as ``{"error": "<message>"}`` (with ``Retry-After`` / ``Allow`` where due);
  only a fault in this code gives a 500, and it is logged with its traceback;
- the optional API key (``X-API-Key``, compared in constant time);
- in-flight accounting for the SIGTERM drain (:class:`frontend.inflight.InFlight`).
"""

from __future__ import annotations

import hmac
import http.client
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from tornado.web import HTTPError, RequestHandler

from common.logs import event
from frontend.errors import ApiError
from frontend.inflight import InFlight

log = logging.getLogger(__name__)

#: Header that carries the API key.
API_KEY_HEADER = "X-API-Key"


class JsonHandler(RequestHandler):
    """Base of every handler: JSON bodies, JSON errors, API key, in-flight count."""

    def _init_json(self, inflight: InFlight) -> None:
        self.inflight = inflight
        self._counted = False
        #: The request's job, once known: internal faults are logged with it.
        self.job_id: str | None = None

    # As in Tornado's RequestHandler: each handler's ``initialize`` takes the
    # arguments of its own route, so the base does not fix a signature.
    initialize: Callable[..., None] = _init_json

    def set_default_headers(self) -> None:
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.set_header("Cache-Control", "no-store")
        self.set_header("X-Content-Type-Options", "nosniff")
        self.clear_header("Server")

    def prepare(self) -> Awaitable[None] | None:
        self._counted = True
        self.inflight.enter()
        return None

    def on_finish(self) -> None:
        self._uncount()

    def on_connection_close(self) -> None:
        super().on_connection_close()
        self._uncount()

    def write_json(self, body: Any, status: int = 200) -> None:
        """Finish the request with ``body`` as JSON."""
        self.set_status(status)
        self.finish(json.dumps(body, default=str))

    def check_api_key(self, api_key: str | None) -> None:
        """Raise ApiError 401 unless ``api_key`` is None or the header matches it."""
        if api_key is None:
            return
        given = self.request.headers.get(API_KEY_HEADER, "")
        if not hmac.compare_digest(given.encode("utf-8"), api_key.encode("utf-8")):
            raise ApiError(401, f"missing or wrong {API_KEY_HEADER} header", kind="unauthorized")

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, ApiError) and exc.retry_after is not None:
            self.set_header("Retry-After", str(exc.retry_after))
        if status_code == 405:
            self.set_header("Allow", ", ".join(self.SUPPORTED_METHODS))
        self.finish(json.dumps({"error": self._error_message(status_code, exc)}))

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        # Client errors are expected: the handler logs what matters about them.
        if isinstance(value, HTTPError):
            return
        fields: dict[str, Any] = {"job_id": self.job_id} if self.job_id else {}
        event(log, "internal_error", logging.ERROR, exc_info=(typ, value, tb),
              method=self.request.method, path=self.request.path[:200], **fields)

    def _error_message(self, status_code: int, exc: BaseException | None) -> str:
        if isinstance(exc, ApiError):
            return exc.message
        if status_code == 405:
            return f"method {self.request.method} is not allowed on {self.request.path[:200]}"
        if isinstance(exc, HTTPError) and exc.log_message:
            return exc.log_message % exc.args if exc.args else exc.log_message
        if status_code >= 500:
            return "internal error; the fault is logged on the server"
        return http.client.responses.get(status_code, "error")

    def _uncount(self) -> None:
        if self._counted:
            self._counted = False
            self.inflight.leave()


class NotFoundHandler(JsonHandler):
    """Every path the API does not have: 404 JSON, whatever the method."""

    SUPPORTED_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")

    def prepare(self) -> None:
        super().prepare()
        raise ApiError(404, f"no such endpoint: {self.request.path[:200]}", kind="not_found")
