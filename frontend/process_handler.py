"""POST /process: take a photo, store it, and queue its job with the broker.

The body is streamed (``@stream_request_body``) so the size limit is enforced
*before* it is read: a Content-Length over ``max_upload_bytes`` is answered 413
from :meth:`ProcessHandler.prepare`, and a chunked body is cut off with 413 as
soon as it passes the limit. Either way the connection is closed after the
response, since the rest of the body is not read.

Before the body is read, the upload passes :mod:`frontend.admission`: while the
queue may already be full, it is held with its body unread, and when the broker
says the queue is full it is answered 503 without its photo being decoded or
stored (its body is still read, and dropped, so the connection stays usable and
the client reads the answer rather than a reset).

A job is acknowledged (202) only after the broker replied ``accepted``, which
means it is journalled. Every other outcome deletes the stored photo, except a
broker timeout: the broker may still accept that job, so the photo stays until
the late reply (or its absence, after the grace period) settles it.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from concurrent.futures import Executor
from typing import Any

from tornado.http1connection import HTTP1Connection
from tornado.ioloop import IOLoop
from tornado.web import stream_request_body

from common import wire
from common.config import ServerSettings
from common.logs import event
from common.photo import PhotoError
from frontend import errors
from frontend.admission import Admission, QueueFull
from frontend.base import JsonHandler
from frontend.broker_client import BrokerClient, BrokerUnavailable
from frontend.errors import ApiError
from frontend.inflight import InFlight
from frontend.metrics import FrontendCounters
from frontend.photo_store import PhotoStore, StorageError
from frontend.uploads import ProcessForm, check_photo, form_boundary, photo_error, read_process_form

log = logging.getLogger(__name__)

#: Ceiling on the connection's body size, in bytes; this handler enforces the real limit
#: itself so that an oversized upload gets a JSON 413 rather than a dropped connection.
CONNECTION_BODY_CEILING = 1 << 40

#: Seconds an admitted upload may take to send its body before it gives its place in
#: :mod:`frontend.admission` back (a slow client must not hold the queue's room).
SLOW_BODY_S = 1.0


@stream_request_body
class ProcessHandler(JsonHandler):
    """POST /process (see docs/api.md for the contract)."""

    SUPPORTED_METHODS = ("POST",)

    def initialize(self, inflight: InFlight, broker: BrokerClient, store: PhotoStore,
                   executor: Executor, server: ServerSettings, admission: Admission,
                   counters: FrontendCounters | None = None) -> None:
        super().initialize(inflight)
        self.broker, self.store, self.executor, self.server = broker, store, executor, server
        self.admission = admission
        self.counters = counters or FrontendCounters()
        self.body = bytearray()
        self.boundary = b""
        #: Counted in ``admission.pending`` until :meth:`_leave`.
        self.admitted = False
        #: The answer decided before the body was read (the queue is full).
        self.refusal: ApiError | None = None
        self.slow_body: object | None = None

    async def prepare(self) -> None:
        super().prepare()
        # Raised first, so that even a refused request's body is discarded quietly
        # (until the connection closes after the response) instead of tripping
        # Tornado's own limit, which would answer a bare 400 after ours.
        if isinstance(self.request.connection, HTTP1Connection):
            self.request.connection.set_max_body_size(CONNECTION_BODY_CEILING)
        try:
            self.check_api_key(self.server.api_key)
            self.boundary = form_boundary(self.request.headers.get("Content-Type"))
            self._check_declared_length()
        except ApiError as exc:
            self._rejected(exc, None)
            raise
        await self._admit()
        if self.admitted:
            # A slow body must not hold the room from the uploads behind it: past
            # SLOW_BODY_S the upload gives its place back and asks again in post().
            self.slow_body = IOLoop.current().call_later(SLOW_BODY_S, self._leave, None)

    async def _admit(self) -> None:
        """Pass admission: sets :attr:`admitted`, or :attr:`refusal` (the queue is full)."""
        try:
            await self.admission.enter()
            self.admitted = True
        except QueueFull as full:
            self.refusal = _refusal({"outcome": "queue_full", **full.reply})
        except BrokerUnavailable as exc:  # nothing was changed at the broker
            self.refusal = errors.broker_unavailable(exc)

    def data_received(self, chunk: bytes) -> None:
        if self._finished:
            return
        self.body += chunk
        if len(self.body) > self.server.max_upload_bytes:
            self.body = bytearray()
            exc = _too_large(self.server.max_upload_bytes)
            self._rejected(exc, None)
            self.send_error(exc.status, exc_info=(type(exc), exc, None))

    async def post(self) -> None:
        if self._finished:  # already answered 413 from data_received
            return
        try:
            form = read_process_form(self.boundary, bytes(self.body))
        except ApiError as exc:
            self._rejected(exc, None)
            raise
        self.body = bytearray()
        self.job_id = form.job_id
        if self.slow_body is not None:
            IOLoop.current().remove_timeout(self.slow_body)
        if not self.admitted and self.refusal is None:
            await self._admit()
        if self.refusal is not None:
            self._rejected(self.refusal, form.job_id)
            raise self.refusal
        try:
            status, reply = await self._accept(form)
        except ApiError as exc:
            self._rejected(exc, form.job_id)
            raise
        self.write_json(reply, status)

    async def _accept(self, form: ProcessForm) -> tuple[int, dict[str, Any]]:
        """Validate the photo, store it, submit the job: ``(status, body)`` or ApiError."""
        loop = asyncio.get_running_loop()
        try:
            # One pool task for both steps: with separate tasks, a burst queues every
            # request's decode ahead of the first request's write.
            path = await loop.run_in_executor(self.executor, self._check_and_store, form)
        except PhotoError as exc:
            raise photo_error(exc) from None
        except StorageError as exc:
            event(log, "photo_store_failed", logging.ERROR, job_id=form.job_id,
                  detail=str(exc))
            status = 507 if exc.no_space else 503
            raise ApiError(status, f"{exc}; retry later", kind="storage_unavailable",
                           retry_after=errors.STORAGE_RETRY_AFTER_S) from None
        job = wire.make_job(form.job_id, form.user_id, form.provider, str(path), time.time())
        return await self._submit(job, path)

    def _check_and_store(self, form: ProcessForm) -> Any:
        """Decode-check the photo, then store it durably (in the pool): its path.

        Raises PhotoError or StorageError."""
        fmt = check_photo(form.image, self.server.max_image_pixels)
        return self.store.write(form.job_id, fmt, form.image)

    async def _submit(self, job: dict[str, Any], path: Any) -> tuple[int, dict[str, Any]]:
        job_id = job["job_id"]
        try:
            reply = await self.broker.submit(
                job, on_late=functools.partial(_settle_late, self.store, job_id, path))
        except BrokerUnavailable as exc:
            if not exc.timed_out:
                self.store.discard(path)
            raise errors.broker_unavailable(exc) from None
        self._leave(reply)
        outcome = reply.get("outcome")
        if outcome == "accepted":
            event(log, "job_submitted", job_id=job_id, user_id=job["user_id"],
                  queue_size=reply.get("queue_size"))
            return 202, {"status": "accepted", "queued": True, "job_id": job_id,
                         "message": "Job added to Qwen mask queue"}
        self.store.discard(path)
        if outcome == "duplicate":
            state = reply.get("state")
            event(log, "job_duplicate", job_id=job_id, state=state)
            self.counters.duplicate()
            return 200, {"status": "accepted", "queued": False, "job_id": job_id,
                         "message": f"Job already known (state: {state}); not queued again",
                         "state": state}
        raise _refusal(reply)

    def on_finish(self) -> None:
        self._leave(None)
        super().on_finish()

    def on_connection_close(self) -> None:
        self._leave(None)
        super().on_connection_close()

    def _leave(self, reply: dict[str, Any] | None) -> None:
        """Stop counting this upload as pending (once), with the broker's reply if any."""
        if self.admitted:
            self.admitted = False
            self.admission.leave(reply)

    def _rejected(self, exc: ApiError, job_id: str | None) -> None:
        """Log a refused request and count it for /metrics."""
        _log_rejected(exc, job_id)
        self.counters.refuse(exc.status, exc.kind)

    def _check_declared_length(self) -> None:
        declared = self.request.headers.get("Content-Length")
        if (declared is not None and declared.strip().isdigit()
                and int(declared) > self.server.max_upload_bytes):
            raise _too_large(self.server.max_upload_bytes)


def _too_large(limit: int) -> ApiError:
    return ApiError(413, f"the upload is larger than the limit of {limit} bytes "
                         f"({limit / 1048576:g} MiB)", kind="body_too_large")


def _refusal(reply: dict[str, Any]) -> ApiError:
    """The API error for a ``submitted`` reply that is neither accepted nor duplicate."""
    outcome = reply.get("outcome")
    if outcome == "queue_full":
        return ApiError(503, f"the queue is full ({reply.get('queue_size')} of "
                             f"{reply.get('queue_max')} jobs); retry later", kind="queue_full",
                        retry_after=errors.QUEUE_FULL_RETRY_AFTER_S)
    if outcome == "no_worker":
        return ApiError(503, f"the job was not queued: {reply.get('error')}; retry later",
                        kind="no_worker",
                        retry_after=errors.NO_WORKER_RETRY_AFTER_S)
    detail = reply.get("error") if outcome == "error" else f"unexpected outcome {outcome!r}"
    return ApiError(503, f"the job queue could not take the job ({detail}); retry later",
                    kind="broker_error", retry_after=errors.BROKER_RETRY_AFTER_S)


def _settle_late(store: PhotoStore, job_id: str, path: Any,
                 reply: dict[str, Any] | None) -> None:
    """A timed-out submit got its answer (or none): keep the photo only if accepted."""
    outcome = reply.get("outcome") if reply else None
    if outcome != "accepted":
        store.discard(path)
    event(log, "job_late_reply", logging.WARNING, job_id=job_id,
          outcome=outcome or "no_reply", photo_kept=outcome == "accepted")


def _log_rejected(exc: ApiError, job_id: str | None) -> None:
    fields: dict[str, Any] = {"job_id": job_id} if job_id else {}
    event(log, "job_rejected", status=exc.status, reason=exc.kind, detail=exc.message, **fields)
