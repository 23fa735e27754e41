"""Asynchronous request/reply to the broker over ONE zmq.asyncio DEALER socket.

Every request carries a fresh ``req`` id that the broker echoes; a single
reader task routes each reply to the request waiting for it, so any number of
HTTP requests share the socket concurrently.

Failure behaviour (the reason the socket options are what they are):

- ``IMMEDIATE``: while no connection to the broker is up, a send waits for one
  (within the same ``timeout_s``) and is then abandoned unsent
  (:class:`BrokerUnavailable`, ``timed_out=False``) instead of being queued and
  delivered minutes later, after the HTTP client was already told 503.
- ZeroMQ reconnects by itself (``RECONNECT_IVL`` .. ``RECONNECT_IVL_MAX``);
  ZMTP heartbeats drop a connection whose peer vanished without closing it.
- A request unanswered after ``timeout_s`` raises :class:`BrokerUnavailable`
  with ``timed_out=True``. Its outcome is then unknown: the broker may still
  act on it. A caller that must know (submit: the photo file must survive an
  accepted job) passes ``on_late``; it is called with the late reply, or with
  ``None`` once ``late_grace_s`` has passed without one.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Callable
from typing import Any

import zmq
import zmq.asyncio

from common import wire
from common.logs import event

log = logging.getLogger(__name__)

#: Seconds a timed-out request stays registered, waiting for a late reply.
LATE_REPLY_GRACE_S = 120.0

#: Milliseconds between reconnection attempts, first and at most.
RECONNECT_IVL_MS, RECONNECT_IVL_MAX_MS = 100, 2000

#: Milliseconds between ZMTP pings, and of silence before the connection is dropped.
HEARTBEAT_IVL_MS, HEARTBEAT_TIMEOUT_MS = 1000, 3000

#: Messages the socket may queue towards the broker before sends fail.
SEND_HWM = 1000

LateCallback = Callable[[dict[str, Any] | None], None]


class BrokerUnavailable(Exception):
    """The broker gave no reply: not connected (``timed_out`` False) or silent."""

    def __init__(self, message: str, timed_out: bool) -> None:
        super().__init__(message)
        self.timed_out = timed_out


class BrokerClient:
    """The front end's side of the broker's ``frontend_endpoint`` (see :mod:`common.wire`).

    Create it anywhere; the socket and reader task start on first use inside
    the running event loop. Call :meth:`close` on shutdown.
    """

    def __init__(self, endpoint: str, timeout_s: float,
                 late_grace_s: float = LATE_REPLY_GRACE_S) -> None:
        self.endpoint = endpoint
        self.timeout_s = timeout_s
        self.late_grace_s = late_grace_s
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future] = {}
        self._late: dict[int, LateCallback] = {}
        self._context: zmq.asyncio.Context | None = None
        self._socket: zmq.asyncio.Socket | None = None
        self._reader: asyncio.Task | None = None

    async def submit(self, job: dict[str, Any], on_late: LateCallback | None = None,
                     ) -> dict[str, Any]:
        """``submit`` a Job; returns the ``submitted`` reply (``outcome``, ``state``, ...)."""
        return await self.request("submit", on_late=on_late, job=job)

    async def room(self) -> dict[str, Any]:
        """Whether the queue has room now: the ``room`` reply (``open``, ``queue_size``,
        ``queue_max``). Cheap for the broker; changes nothing there."""
        return await self.request("room")

    async def job(self, job_id: str) -> dict[str, Any] | None:
        """The broker's record of ``job_id``, or None if it does not know the job."""
        reply = await self.request("job", job_id=job_id)
        record = reply.get("record")
        return record if isinstance(record, dict) else None

    async def stats(self) -> dict[str, Any]:
        """The broker's ``stats`` map."""
        reply = await self.request("stats")
        stats = reply.get("stats")
        return stats if isinstance(stats, dict) else {}

    async def request(self, msg_type: str, on_late: LateCallback | None = None,
                      **fields: Any) -> dict[str, Any]:
        """Send one request and wait up to ``timeout_s`` (in all) for its reply.

        Raises :class:`BrokerUnavailable`.
        """
        sock = self.start()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout_s
        req = next(self._ids)
        future = loop.create_future()
        self._pending[req] = future
        try:
            frame = wire.encode(msg_type, req=req, **fields)
            try:
                # A send waits for a connection (IMMEDIATE); cancelled, it is never sent.
                await asyncio.wait_for(sock.send(frame), self.timeout_s)
            except TimeoutError:
                raise BrokerUnavailable(f"the broker is not connected (waited "
                                        f"{self.timeout_s:g} s)", timed_out=False) from None
            try:
                return await asyncio.wait_for(future, max(deadline - loop.time(), 0.001))
            except TimeoutError:
                if on_late is not None:
                    self._await_late(req, on_late)
                raise BrokerUnavailable(f"the broker did not answer within {self.timeout_s:g} s",
                                        timed_out=True) from None
        finally:
            self._pending.pop(req, None)

    async def close(self) -> None:
        """Stop the reader and close the socket; unanswered late requests are dropped."""
        if self._reader is not None:
            self._reader.cancel()
            try:
                await self._reader
            except asyncio.CancelledError:
                pass
        if self._socket is not None:
            self._socket.close(linger=0)
        if self._context is not None:
            self._context.term()
        self._reader = self._socket = self._context = None

    def start(self) -> zmq.asyncio.Socket:
        """Open the socket and start connecting (call from inside the event loop);
        the socket. Idempotent; :meth:`request` calls it too.
        """
        if self._socket is not None:
            return self._socket
        self._context = zmq.asyncio.Context()
        sock = self._context.socket(zmq.DEALER)
        for option, value in ((zmq.IMMEDIATE, 1), (zmq.LINGER, 0), (zmq.SNDHWM, SEND_HWM),
                              (zmq.RECONNECT_IVL, RECONNECT_IVL_MS),
                              (zmq.RECONNECT_IVL_MAX, RECONNECT_IVL_MAX_MS),
                              (zmq.HEARTBEAT_IVL, HEARTBEAT_IVL_MS),
                              (zmq.HEARTBEAT_TIMEOUT, HEARTBEAT_TIMEOUT_MS)):
            sock.setsockopt(option, value)
        sock.connect(self.endpoint)
        self._socket = sock
        self._reader = asyncio.get_running_loop().create_task(self._read_replies(sock))
        return sock

    async def _read_replies(self, sock: zmq.asyncio.Socket) -> None:
        while True:
            frame = await sock.recv()
            try:
                msg = wire.decode(frame)
            except wire.WireError as exc:
                event(log, "broker_reply_invalid", logging.WARNING, detail=str(exc))
                continue
            self._route(msg)

    def _route(self, msg: dict[str, Any]) -> None:
        req = msg.get("req")
        if not isinstance(req, int):
            event(log, "broker_reply_unexpected", logging.WARNING, type=msg.get("type"))
            return
        future = self._pending.pop(req, None)
        if future is not None and not future.done():
            future.set_result(msg)
            return
        callback = self._late.pop(req, None)
        if callback is not None:
            _call_late(callback, msg)
            return
        event(log, "broker_reply_unexpected", logging.WARNING, req=req, type=msg.get("type"))

    def _await_late(self, req: int, callback: LateCallback) -> None:
        self._late[req] = callback
        asyncio.get_running_loop().call_later(self.late_grace_s, self._expire_late, req)

    def _expire_late(self, req: int) -> None:
        callback = self._late.pop(req, None)
        if callback is not None:
            _call_late(callback, None)


def _call_late(callback: LateCallback, msg: dict[str, Any] | None) -> None:
    # A failing callback must not kill the reader task every request depends on.
    try:
        callback(msg)
    except Exception:  # a faulty callback must not stop the reply reader  # noqa: BLE001
        event(log, "late_reply_callback_failed", logging.ERROR, exc_info=True)
