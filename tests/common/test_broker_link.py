"""The broker connection shared by the workers and the uploader, against a bare ROUTER."""

from __future__ import annotations

import time

import pytest
import zmq

from common import wire
from common.broker_link import BrokerLink
from tests.support.procs import free_port


@pytest.fixture
def router():
    ctx = zmq.Context()
    sock = ctx.socket(zmq.ROUTER)
    sock.linger = 0
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    sock.bind(endpoint)
    try:
        yield ctx, sock, endpoint
    finally:
        sock.close()
        ctx.destroy(linger=0)


def poll_until(link: BrokerLink, done, timeout: float = 5.0) -> list[dict]:
    messages: list[dict] = []
    deadline = time.monotonic() + timeout
    while not done(messages):
        assert time.monotonic() < deadline, "timed out"
        messages += link.poll(50)[0]
    return messages


def test_each_connection_is_an_epoch_and_messages_arrive_decoded(router):
    ctx, sock, endpoint = router
    link = BrokerLink(ctx, endpoint, expiry_s=5.0, immediate=True)
    assert not link.send(b"not connected yet")   # immediate: fails at once
    link.connect()
    poll_until(link, lambda _: link.connected)
    assert link.epoch == 1 and link.send(wire.encode("ready"))
    assert sock.poll(5000)
    peer, frame = sock.recv_multipart()
    assert wire.decode(frame)["type"] == "ready"
    sock.send_multipart([peer, b"garbage"])
    sock.send_multipart([peer, wire.encode("heartbeat")])
    assert poll_until(link, bool) == [{"v": 1, "type": "heartbeat"}]   # the bad frame is dropped
    sock.close(linger=0)                         # the broker goes away
    poll_until(link, lambda _: not link.connected)
    assert link.epoch == 1
    link.close()


def test_silence_replaces_the_socket_with_doubling_patience_reset_by_the_broker(router):
    ctx, sock, endpoint = router
    link = BrokerLink(ctx, endpoint, expiry_s=1.0, patience_s=0.5, max_patience_s=1.5)
    link.connect()
    start = link.heard_at
    assert not link.check(start + 1.5)           # expiry + the first patience
    old = link.sock
    assert link.check(start + 1.6) and link.sock is not old and link.patience == 1.0
    assert not link.check(link.heard_at + 2.0) and link.check(link.heard_at + 2.1)
    assert link.patience == 1.5                  # capped
    link.check(link.heard_at + 10)
    assert link.patience == 1.5
    link.send(wire.encode("ready"))
    assert sock.poll(5000)
    peer, _ = sock.recv_multipart()              # only the newest socket is connected
    sock.send_multipart([peer, wire.encode("heartbeat")])
    poll_until(link, bool)
    assert (link.patience, link.grace) == (0.5, 0.0)   # heard: back to the start
    assert not link.check(link.heard_at + 1.0) and link.check(link.heard_at + 1.1)
    link.close()
