"""The workers' and the uploader's connection to the broker, which heals itself
(the ZeroMQ guide's Paranoid Pirate pattern). When the broker, which heartbeats
its peers, is silent for ``expiry_s`` (plus a patience that doubles with each
loss in a row, up to ``max_patience_s``) the socket is replaced: a half-open TCP
connection would otherwise look alive forever. Sends never block; with
``immediate`` they fail while no broker is connected, else they wait in the socket."""

from __future__ import annotations

import logging
import time
from typing import Any

import zmq
from zmq.utils.monitor import recv_monitor_message

from common import curve
from common.logs import event
from common.wire import WireError, decode

log = logging.getLogger("broker_link")

#: Outgoing messages queued for a slow broker before sends fail, in messages.
SEND_HWM = 10_000


class BrokerLink:
    """A DEALER to ``endpoint``: built here, connected by :meth:`connect`,
    replaced by :meth:`check` when the broker falls silent."""

    def __init__(self, ctx: zmq.Context, endpoint: str, expiry_s: float, *,
                 patience_s: float = 0.0, max_patience_s: float = 0.0,
                 keys: curve.ClientKeys | None = None, immediate: bool = False) -> None:
        self.ctx, self.endpoint, self.expiry_s = ctx, endpoint, expiry_s
        self.keys, self.immediate = keys, immediate
        self.base_patience, self.max_patience = patience_s, max_patience_s
        self.patience = patience_s   #: extra silence allowed after the next (re)connect
        self.grace = patience_s      #: extra silence allowed until the broker is heard
        self.epoch, self.connected = 0, False   #: handshakes so far; whether one is up
        self.heard_at = time.monotonic()  #: the broker's last frame, or our last connect
        self.sock, self.monitor = self._socket()

    def _socket(self) -> tuple[zmq.Socket, zmq.Socket]:
        sock = self.ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.IMMEDIATE, int(self.immediate))
        sock.setsockopt(zmq.SNDHWM, SEND_HWM)
        if self.keys is not None:
            curve.make_client(sock, self.keys)
        return sock, sock.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_DISCONNECTED)

    def connect(self) -> None:
        """Start connecting (in the background)."""
        self.sock.connect(self.endpoint)
        self.heard_at, self.grace = time.monotonic(), self.patience

    def close(self, linger_ms: int = 0) -> None:
        """Close the socket; what is not sent within ``linger_ms`` is dropped."""
        self.sock.disable_monitor()
        self.monitor.close(linger=0)
        self.sock.close(linger=linger_ms)
        self.connected = False

    def check(self, now: float) -> bool:
        """Replace the socket if the broker was silent too long; True when it was
        (the caller then announces itself again)."""
        silent_s = now - self.heard_at
        if silent_s <= self.expiry_s + self.grace:
            return False
        self.patience = min(self.patience * 2, self.max_patience)
        event(log, "broker_silent", logging.WARNING, endpoint=self.endpoint,
              silent_s=round(silent_s, 1), next_check_s=round(self.expiry_s + self.patience, 3))
        self.close()
        self.sock, self.monitor = self._socket()
        self.connect()
        return True

    def send(self, frame: bytes) -> bool:
        """Send one frame without waiting; False when it could not go."""
        try:
            self.sock.send(frame, zmq.NOBLOCK)
            return True
        except zmq.Again:
            return False

    def poll(self, timeout_ms: int, *also: zmq.Socket
             ) -> tuple[list[dict[str, Any]], list[zmq.Socket]]:
        """Wait up to ``timeout_ms``; returns the valid messages from the broker
        and the sockets of ``also`` that are readable."""
        poller = zmq.Poller()
        for sock in (self.sock, self.monitor, *also):
            poller.register(sock, zmq.POLLIN)
        ready = dict(poller.poll(timeout_ms))
        while self.monitor in ready and self.monitor.poll(0):
            if recv_monitor_message(self.monitor)["event"] == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                self.epoch, self.connected, self.heard_at = self.epoch + 1, True, time.monotonic()
                event(log, "broker_connected", endpoint=self.endpoint, epoch=self.epoch)
            elif self.connected:  # a lost connection (failed handshakes are not news)
                self.connected = False
                event(log, "broker_disconnected", logging.WARNING, endpoint=self.endpoint)
        messages: list[dict[str, Any]] = []
        while self.sock in ready and self.sock.poll(0):
            frame = self.sock.recv_multipart()[-1]
            # any frame, even a bad one, shows the broker is alive
            self.heard_at, self.grace, self.patience = time.monotonic(), 0.0, self.base_patience
            try:
                messages.append(decode(frame))
            except WireError as exc:
                event(log, "invalid_frame", logging.WARNING, endpoint=self.endpoint,
                      error=str(exc))
        return messages, [sock for sock in also if sock in ready]

