"""The worker loop in-process, with a fake engine, against a stub broker (the real core)."""

from __future__ import annotations

import threading
import time

import pytest
import zmq

from common import wire
from segworker.worker import Worker
from tests.segworker.worker_support import FakeEngine, FakeProcess, png_photo, worker_settings
from tests.support.stub_broker import WORKERS, StubBroker


@pytest.fixture
def rig(tmp_path):
    ctx = zmq.Context()
    broker = StubBroker(tmp_path, heartbeat_s=0.1).start()
    process = FakeProcess()
    started: list[tuple[Worker, threading.Thread]] = []

    def start(drain_s: float = 5.0, **env: str) -> Worker:
        worker = Worker(worker_settings(broker.worker_endpoint, **env), FakeEngine(), process,
                        index=3, ctx=ctx, drain_s=drain_s)
        thread = threading.Thread(target=worker.run, daemon=True)
        thread.start()
        started.append((worker, thread))
        return worker

    def photo(name: str, width: int = 64, height: int = 48) -> str:
        path = tmp_path / f"{name}.png"
        path.write_bytes(png_photo(width, height))
        return str(path)

    def next_message(timeout: float = 10.0, skip: tuple[str, ...] = ("heartbeat",)):
        return broker.next_message(WORKERS, timeout, skip)

    rig = type("Rig", (), {})()
    rig.broker, rig.process, rig.start, rig.ctx = broker, process, start, ctx
    rig.photo, rig.next_message = photo, next_message
    try:
        yield rig
    finally:
        process.release.set()
        for worker, thread in started:
            worker.request_stop()
            thread.join(10)
        broker.close()
        ctx.term()


def second_attempt(broker: StubBroker, job_id: str, path: str) -> None:
    """Queue ``job_id`` at attempt 1: an earlier worker took it and gave it back."""
    broker.add_worker("earlier")
    broker.submit(job_id, path)
    broker.fail(job_id, "worker_error", retryable=True, leave=True)


def test_ready_job_result_then_ready_again(rig):
    second_attempt(rig.broker, "job-1", rig.photo("p", 64, 48))
    worker = rig.start()
    _, ready = rig.next_message()
    assert ready["type"] == "ready"
    info = ready["worker"]
    assert info["id"] == worker.name and info["id"].endswith("-3") and info["index"] == 3
    assert (info["engine"], info["model_loaded"], info["busy"], info["inline_images"]) == \
        ("fake", True, False, False)
    _, result = rig.next_message()          # the broker dispatched job-1 on that ready
    assert result["type"] == "result" and (result["job_id"], result["attempt"]) == ("job-1", 1)
    assert set(result["masks"]) == {wire.UPPER, wire.LOWER} and result["engine"] == "fake"
    assert set(result["timings"]) == {"decode_ms", "process_ms", "stages_ms"}
    # a process function without stage times (this fake) still reports the decode
    assert set(result["timings"]["stages_ms"]) == {"decode"}
    assert rig.process.shapes == [(48, 64, 3)]
    assert rig.next_message()[1]["type"] == "ready"
    record = rig.broker.record("job-1")
    assert (record["state"], record["worker"], record["attempts"]) == ("uploading", worker.name, 2)
    assert set(rig.broker.storage.stored["job-1"]) == {wire.UPPER, wire.LOWER}


def test_heartbeats_keep_coming_while_a_job_runs(rig):
    rig.process.release.clear()
    rig.broker.submit("slow", rig.photo("slow"))
    rig.start()
    peer, _ = rig.next_message()
    assert rig.process.started.wait(10)
    mark = len(rig.broker.messages(WORKERS))
    rig.broker.wait(lambda: len(rig.broker.messages(WORKERS)) >= mark + 3, what="3 heartbeats")
    beats = rig.broker.messages(WORKERS)[mark:mark + 3]
    assert [b["type"] for b in beats] == ["heartbeat"] * 3
    assert all(b["worker"]["busy"] and b["worker"]["job_id"] == "slow" for b in beats)
    # A job sent while busy (the broker never does) is handed straight back.
    extra = wire.make_job("extra", "user-1", "qwen", rig.photo("extra"), time.time())
    rig.broker.send(WORKERS, "job", peer=peer, job=extra, image=None, deadline_s=30.0)
    while (refused := rig.next_message()[1])["type"] != "failed":
        pass
    assert (refused["type"], refused["job_id"], refused["reason"], refused["retryable"]) == \
        ("failed", "extra", "worker_busy", True)
    rig.process.release.set()
    assert rig.next_message()[1]["job_id"] == "slow"


def test_broker_silence_makes_the_worker_reconnect_and_announce_itself(rig):
    worker = rig.start()
    first_peer, _ = rig.next_message()
    rig.broker.pause()
    # The broker never answers: after the expiry (0.5 s) a fresh socket says ready again.
    second_peer, again = rig.next_message(timeout=10)
    assert again["type"] == "ready" and again["worker"]["id"] == worker.name
    assert second_peer != first_peer


def test_stop_while_busy_finishes_the_job_then_disconnects(rig):
    rig.process.release.clear()
    rig.broker.submit("job-1", rig.photo("p"))
    worker = rig.start()
    rig.next_message()
    assert rig.process.started.wait(10)
    worker.request_stop()
    threading.Timer(0.3, rig.process.release.set).start()
    assert [rig.next_message()[1]["type"] for _ in range(2)] == ["result", "disconnect"]
    assert not worker.abandoned
    rig.broker.wait(lambda: rig.broker.stats()["workers"] == 0, what="the worker to leave")
    assert rig.broker.record("job-1")["state"] == "uploading"


def test_stop_hands_the_job_back_after_the_drain_bound(rig):
    rig.process.release.clear()
    second_attempt(rig.broker, "job-1", rig.photo("p"))
    worker = rig.start(drain_s=0.3)
    rig.next_message()
    assert rig.process.started.wait(10)
    worker.request_stop()
    _, failed = rig.next_message()
    assert (failed["type"], failed["job_id"], failed["attempt"], failed["reason"],
            failed["retryable"]) == ("failed", "job-1", 1, "worker_shutdown", True)
    assert rig.next_message()[1]["type"] == "disconnect"
    assert worker.abandoned
    record = rig.broker.record("job-1")
    assert (record["state"], record["reason"]) == ("queued", "worker_shutdown")


def test_inline_worker_uses_the_bytes_and_reports_missing_ones(rig):
    rig.broker.submit("a", image=png_photo(40, 30))   # the broker holds the bytes, no file
    rig.start(WORKER_INLINE_IMAGES="true")
    _, ready = rig.next_message()
    assert ready["worker"]["inline_images"] is True
    assert rig.next_message()[1]["type"] == "result"
    assert rig.process.shapes == [(30, 40, 3)]
    rig.next_message()
    rig.broker.submit("b")                  # the broker cannot read this photo
    _, failed = rig.next_message()
    assert (failed["reason"], failed["retryable"]) == ("image_missing", False)
    assert rig.broker.record("b")["reason"] == "image_missing"


def test_worker_info_says_how_the_engine_runs():
    class CompiledEngine(FakeEngine):
        def describe(self) -> dict:
            return {"engine": "fake", "device": "cpu", "precision": "bf16", "backend": "openvino",
                    "precision_because": "SCHP_PRECISION=bf16", "backend_because": "x",
                    "cache": "hit"}

    ctx = zmq.Context()
    try:
        settings = worker_settings("tcp://127.0.0.1:1")
        info = Worker(settings, CompiledEngine(), FakeProcess(), ctx=ctx).info()
        assert (info["precision"], info["backend"]) == ("bf16", "openvino")
        assert info["precision_because"] == "SCHP_PRECISION=bf16" and "cache" not in info
        plain = Worker(settings, FakeEngine(), FakeProcess(), ctx=ctx).info()
        assert "precision" not in plain and "backend" not in plain
    finally:
        ctx.destroy(linger=0)  # closes the workers' wake sockets too
