"""A real HTTP stand-in for the Mask Asset Service, for uploader, end-to-end
and fault tests.

It runs a small Tornado app on 127.0.0.1 (a free port) in a background thread
with its own event loop, checks every request the way docs/uploader.md tells
a receiver to (``X-Internal-Auth`` and the ``X-Signature`` HMAC, both
verified here independently of the uploader's code), records everything,
and answers scripted responses::

    rx = Receiver(secret)
    url = rx.start()                 # http://127.0.0.1:<port>/masks
    rx.script([500, (503, 2), "hang", 401])   # then 200 for ever
    ...
    rx.uploads                       # snapshot list of records (dicts)
    rx.delivered_job_ids()           # job ids answered 2xx, in order
    rx.set_down(True)                # connection refused (and open connections cut)
    rx.set_down(False)               # listening again, same port
    rx.stop()

``Receiver(secret, tls=(certfile, keyfile))`` serves HTTPS instead.

Script items (consumed one per authentic request, in order): an int status;
``(status, retry_after)`` where retry_after is seconds (int) or an HTTP date
(str) sent as ``Retry-After``; ``"hang"``: answer nothing for ``hang_s``
seconds (set it above the uploader's read timeout); a client still waiting
then gets 200 (its record turns from "hang" to 200). A request
failing the auth or signature check gets 401 without consuming the script.

A record: ``{job_id, user_id, provider, files {name: bytes}, filenames
{name: filename}, content_types {name: type}, headers {name: value},
signature_ok, auth_ok, status (int, or "hang"), received_at (time.time()),
received_mono (time.monotonic())}``.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import socket
import ssl
import threading
import time
from collections.abc import Callable, Coroutine, Iterable
from typing import Any

import tornado.http1connection
import tornado.httpserver
import tornado.httputil
import tornado.netutil
import tornado.web

#: Path the receiver serves (appended to the URL returned by ``start``).
PATH = "/masks"
#: Default seconds a "hang" response withholds its answer.
DEFAULT_HANG_S = 5.0
#: Signature age the receiver accepts, in seconds.
TOLERANCE_S = 300


def check_signature(secret: str, header: str | None, body: bytes,
                    tolerance_s: float = TOLERANCE_S) -> bool:
    """The receiver-side check from docs/uploader.md (deliberately not the uploader's code)."""
    try:
        parts = dict(p.split("=", 1) for p in (header or "").split(","))
        t = int(parts["t"])
        sent = parts["v1"]
    except (ValueError, KeyError):
        return False
    if abs(time.time() - t) > tolerance_s:
        return False
    expected = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected.encode(), sent.encode())


class _Handler(tornado.web.RequestHandler):
    def initialize(self, receiver: Receiver) -> None:
        self.rx = receiver

    def check_xsrf_cookie(self) -> None:  # a machine-to-machine API
        pass

    async def post(self) -> None:
        record = self.rx._parse(self.request)
        if not (record["auth_ok"] and record["signature_ok"]):
            self.rx._add(record, 401)
            return self._answer(401, {"error": "authentication failed"})
        item = self.rx._next()
        if item == "hang":
            self.rx._add(record, "hang")
            await asyncio.sleep(self.rx.hang_s)
            connection = self.request.connection
            # Tornado's HTTPServer hands every request its HTTP/1 connection.
            assert isinstance(connection, tornado.http1connection.HTTP1Connection)
            if connection.stream.closed():
                return  # the client gave up, as intended
            self.rx._set_status(record, 200)
            return self._answer(200, {"asset_id": f"asset-{record['job_id']}"})
        status, retry_after = item if isinstance(item, tuple) else (item, None)
        self.rx._add(record, status)
        if retry_after is not None:
            self.set_header("Retry-After", str(retry_after))
        if 200 <= status < 300:
            return self._answer(status, {"asset_id": f"asset-{record['job_id']}"})
        return self._answer(status, {"error": f"scripted {status}"})

    def _answer(self, status: int, payload: dict) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(payload))


class Receiver:
    """The stand-in asset service (see the module docstring)."""

    def __init__(self, secret: str, hang_s: float = DEFAULT_HANG_S,
                 tls: tuple[str, str] | None = None):
        """``tls``: ``(certfile, keyfile)`` to serve HTTPS instead of HTTP."""
        self.secret = secret
        self.hang_s = hang_s
        self.tls = tls
        self.port: int | None = None
        self._records: list[dict[str, Any]] = []
        self._script: list[Any] = []
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: tornado.httpserver.HTTPServer | None = None
        self._app = tornado.web.Application([(PATH, _Handler, {"receiver": self})])

    @property
    def url(self) -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://127.0.0.1:{self.port}{PATH}"

    def start(self) -> str:
        """Start serving on a free port; returns the URL to POST to."""
        started = threading.Event()
        self._thread = threading.Thread(target=self._serve, args=(started,), daemon=True,
                                        name="receiver")
        self._thread.start()
        if not started.wait(10):
            raise RuntimeError("receiver did not start")
        self._call(self._listen)
        return self.url

    def stop(self) -> None:
        """Stop serving and end the thread (idempotent)."""
        if self._loop is None:
            return
        self._call(self._unlisten)
        loop, self._loop = self._loop, None
        loop.call_soon_threadsafe(loop.stop)
        assert self._thread is not None, "a loop exists only once start() made the thread"
        self._thread.join(10)

    def set_down(self, down: bool) -> None:
        """Down: refuse connections and cut open ones. Up: listen on the same port."""
        self._call(self._unlisten if down else self._listen)

    def script(self, items: Iterable[Any]) -> None:
        """Queue responses for the next authentic requests (then 200 again)."""
        with self._lock:
            self._script.extend(items)

    @property
    def uploads(self) -> list[dict[str, Any]]:
        """A snapshot of every request received, oldest first."""
        return self._records_view()

    def delivered_job_ids(self) -> list[str]:
        """Job ids of the requests answered 2xx, oldest first (duplicates kept)."""
        return [r["job_id"] for r in self._records_view()
                if isinstance(r["status"], int) and 200 <= r["status"] < 300]

    # -- inside the receiver's thread -------------------------------------------------

    def _serve(self, started: threading.Event) -> None:
        loop = self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        started.set()
        loop.run_forever()
        pending = asyncio.all_tasks(loop)  # e.g. a "hang" still sleeping
        for task in pending:
            task.cancel()
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        loop.close()

    def _call(self, coro_fn: Callable[[], Coroutine[Any, Any, None]]) -> None:
        if self._loop is None:
            raise RuntimeError("the receiver is not running (call start() first)")
        asyncio.run_coroutine_threadsafe(coro_fn(), self._loop).result(10)

    async def _listen(self) -> None:
        if self._server is not None:
            return
        socks = tornado.netutil.bind_sockets(self.port or 0, "127.0.0.1", socket.AF_INET)
        self.port = socks[0].getsockname()[1]
        ssl_options = None
        if self.tls:
            ssl_options = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ssl_options.load_cert_chain(*self.tls)
        self._server = tornado.httpserver.HTTPServer(self._app, max_buffer_size=200 << 20,
                                                     ssl_options=ssl_options)
        self._server.add_sockets(socks)

    async def _unlisten(self) -> None:
        if self._server is None:
            return
        server, self._server = self._server, None
        server.stop()
        await server.close_all_connections()

    def _next(self) -> Any:
        with self._lock:
            return self._script.pop(0) if self._script else 200

    def _add(self, record: dict[str, Any], status: Any) -> None:
        with self._lock:
            record["status"] = status
            self._records.append(record)

    def _set_status(self, record: dict[str, Any], status: Any) -> None:
        with self._lock:
            record["status"] = status

    def _records_view(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(r) for r in self._records]

    def _parse(self, request: tornado.httputil.HTTPServerRequest) -> dict[str, Any]:
        args: dict[str, list[bytes]] = {}
        files: dict[str, list[tornado.httputil.HTTPFile]] = {}
        tornado.httputil.parse_body_arguments(request.headers.get("Content-Type", ""),
                                              request.body, args, files, request.headers)
        field = lambda k: args[k][0].decode() if k in args else None
        auth = request.headers.get("X-Internal-Auth", "")
        return {
            "job_id": field("job_id"), "user_id": field("user_id"), "provider": field("provider"),
            "files": {k: v[0].body for k, v in files.items()},
            "filenames": {k: v[0].filename for k, v in files.items()},
            "content_types": {k: v[0].content_type for k, v in files.items()},
            "headers": dict(request.headers.get_all()),
            "auth_ok": hmac.compare_digest(auth.encode(), self.secret.encode()),
            "signature_ok": check_signature(self.secret, request.headers.get("X-Signature"),
                                            request.body),
            "status": None, "received_at": time.time(), "received_mono": time.monotonic(),
        }
