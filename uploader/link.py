"""The uploader's connection to the broker: one DEALER socket plus a socket
monitor that tells when a connection (re)starts.

Each completed handshake starts a new *epoch*; the service then sends
``ready`` and re-sends its state outbox. If the broker stays silent for its
peer expiry, the socket is replaced (a half-open TCP connection would
otherwise look alive forever). Sends never block: with ``IMMEDIATE`` a
message for a broker that is not connected fails at once, and the caller
decides whether it matters (acks and states are re-sent; heartbeats not).
"""

from __future__ import annotations

import logging
import time
from typing import Any, Iterator

import zmq
from zmq.utils.monitor import recv_monitor_message

from common.config import BrokerSettings
from common.logs import event
from common.wire import WireError, decode

log = logging.getLogger("uploader.link")

#: Outgoing messages queued for a slow broker before sends fail, in messages.
SEND_HWM = 10_000
#: Socket monitor events the link reacts to.
MONITOR_EVENTS = zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_DISCONNECTED


class BrokerLink:
    """A self-healing DEALER connection to ``broker.uploader_endpoint``.

    ``poll`` yields ``("connected", None)`` when a new epoch starts and
    ``("message", msg)`` for each valid message from the broker.
    """

    def __init__(self, ctx: zmq.Context, broker: BrokerSettings):
        self.ctx = ctx
        self.endpoint = broker.uploader_endpoint
        self.expiry_s = broker.peer_expiry_s
        self.epoch = 0
        self.connected = False
        self.heard_at = time.monotonic()
        self.sock: zmq.Socket | None = None
        self.monitor: zmq.Socket | None = None
        self.poller = zmq.Poller()

    def open(self) -> None:
        """Create the socket and start connecting (in the background)."""
        sock = self.ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.IMMEDIATE, 1)
        sock.setsockopt(zmq.SNDHWM, SEND_HWM)
        self.monitor = sock.get_monitor_socket(MONITOR_EVENTS)
        sock.connect(self.endpoint)
        self.sock, self.connected, self.heard_at = sock, False, time.monotonic()
        self.poller = zmq.Poller()
        self.poller.register(sock, zmq.POLLIN)
        self.poller.register(self.monitor, zmq.POLLIN)

    def close(self) -> None:
        """Drop the connection now (unsent messages are discarded)."""
        if self.sock is not None:
            self.sock.disable_monitor()
            self.monitor.close(linger=0)
            self.sock.close(linger=0)
            self.sock = self.monitor = None
            self.connected = False

    def poll(self, timeout_ms: int) -> Iterator[tuple[str, Any]]:
        """Wait up to ``timeout_ms`` and yield what arrived (see the class doc)."""
        ready = dict(self.poller.poll(timeout_ms))
        if self.monitor in ready:
            yield from self._monitor_events()
        if self.sock in ready:
            yield from self._messages()

    def _monitor_events(self) -> Iterator[tuple[str, Any]]:
        while self.monitor.poll(0):
            evt = recv_monitor_message(self.monitor)["event"]
            if evt == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                self.epoch += 1
                self.connected, self.heard_at = True, time.monotonic()
                event(log, "broker_connected", endpoint=self.endpoint, epoch=self.epoch)
                yield ("connected", None)
            elif evt == zmq.EVENT_DISCONNECTED:
                self.connected = False
                event(log, "broker_disconnected", logging.WARNING, endpoint=self.endpoint)

    def _messages(self) -> Iterator[tuple[str, Any]]:
        while True:
            try:
                frames = self.sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            self.heard_at = time.monotonic()
            try:
                msg = decode(frames[-1])
            except WireError as exc:
                event(log, "broker_bad_message", logging.WARNING, error=str(exc))
                continue
            yield ("message", msg)

    def send(self, frame: bytes) -> bool:
        """Send one frame if the broker is connected; False when it could not go."""
        if self.sock is None:
            return False
        try:
            self.sock.send(frame, zmq.NOBLOCK)
            return True
        except zmq.Again:
            return False

    def check_silence(self, now: float) -> bool:
        """Replace the socket when the broker was silent for its peer expiry."""
        if now - self.heard_at <= self.expiry_s:
            return False
        event(log, "broker_silent", logging.WARNING, endpoint=self.endpoint,
              silent_s=round(now - self.heard_at, 1))
        self.close()
        self.open()
        return True
