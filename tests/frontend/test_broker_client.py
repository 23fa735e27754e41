"""BrokerClient: request/reply over one DEALER socket, timeouts, late replies, reconnects."""

from __future__ import annotations

import asyncio

import pytest

from common import wire
from frontend.broker_client import BrokerClient, BrokerUnavailable
from tests.support.stub_broker import FRONT, ROOT, StubBroker


def run(coro_fn, *args):
    return asyncio.run(coro_fn(*args))


def job(job_id: str) -> dict:
    return wire.make_job(job_id, "user", "qwen", f"{ROOT}/{job_id}.jpg", 1.0)


async def _with_client(endpoint, body, timeout_s=3.0, grace_s=30.0):
    client = BrokerClient(endpoint, timeout_s, grace_s)
    try:
        return await body(client)
    finally:
        await client.close()


def test_concurrent_requests_each_get_their_own_reply():
    with StubBroker() as stub:
        for i in range(0, 20, 2):
            stub.submit(f"j{i}")

        async def body(client):
            return await asyncio.gather(*(client.job(f"j{i}") for i in range(20)))
        records = run(_with_client, stub.front_endpoint, body)
    assert [r and r["job_id"] for r in records] == [f"j{i}" if i % 2 == 0 else None
                                                   for i in range(20)]


def test_submit_outcomes():
    with StubBroker() as stub:
        async def body(client):
            first = await client.submit(job("a"))
            again = await client.submit(job("a"))
            stub.fill_queue()
            full = await client.submit(job("b"))
            return first, again, full
        first, again, full = run(_with_client, stub.front_endpoint, body)
    assert (first["outcome"], again["outcome"], again["state"], full["outcome"]) == (
        "accepted", "duplicate", "queued", "queue_full")


def test_unconnected_request_fails_and_is_never_delivered_later():
    stub = StubBroker()   # not started yet

    async def body(client):
        with pytest.raises(BrokerUnavailable) as caught:
            await client.submit(job("lost"))
        assert caught.value.timed_out is False
        client.timeout_s = 4.0  # leave time for the reconnection back-off
        with stub:
            stats = await client.stats()  # the connection is up from here on
            await asyncio.sleep(0.2)
            return stats, [m["type"] for m in stub.messages(FRONT)]
    stats, received = run(_with_client, stub.front_endpoint, body, 0.3)
    assert stats["queue_max"] == 100
    assert received == ["stats"]
    assert stub.record("lost") is None


def test_silent_broker_times_out_and_late_reply_is_delivered():
    with StubBroker() as stub:
        stub.pause()
        late = []

        async def body(client):
            with pytest.raises(BrokerUnavailable) as caught:
                await client.submit(job("slow"), on_late=late.append)
            assert caught.value.timed_out is True
            stub.resume()
            for _ in range(250):
                if late:
                    break
                await asyncio.sleep(0.02)
        run(_with_client, stub.front_endpoint, body, 0.2, 30.0)
    assert [m["outcome"] for m in late] == ["accepted"]


def test_no_late_reply_within_grace_calls_back_with_none():
    with StubBroker() as stub:
        stub.pause()
        late = []

        async def body(client):
            with pytest.raises(BrokerUnavailable):
                await client.submit(job("slow"), on_late=late.append)
            for _ in range(250):
                if late:
                    break
                await asyncio.sleep(0.02)
        run(_with_client, stub.front_endpoint, body, 0.2, 0.3)
    assert late == [None]


def test_reconnects_after_broker_restart():
    with StubBroker() as stub:
        stub.add_worker("w0")

        async def body(client):
            first = await client.stats()
            stub.down()
            stub.up()
            second = await client.stats()
            return first, second
        first, second = run(_with_client, stub.front_endpoint, body, 4.0)
    assert first["workers"] == second["workers"] == 1
