"""The worker loop in-process, with a fake engine, against a stand-in broker."""

from __future__ import annotations

import threading

import pytest
import zmq

from common import wire
from segworker.worker import Worker
from tests.segworker.worker_support import (FakeBroker, FakeEngine, FakeProcess, png_photo,
                                            worker_settings)


@pytest.fixture
def rig():
    ctx = zmq.Context()
    broker = FakeBroker(ctx)
    process = FakeProcess()
    started: list[tuple[Worker, threading.Thread]] = []

    def start(drain_s: float = 5.0, **env: str) -> Worker:
        worker = Worker(worker_settings(broker.endpoint, **env), FakeEngine(), process,
                        index=3, ctx=ctx, drain_s=drain_s)
        worker.exit_code = None

        def body():
            worker.exit_code = worker.run()

        thread = threading.Thread(target=body, daemon=True)
        thread.start()
        started.append((worker, thread))
        return worker

    rig = type("Rig", (), {})()
    rig.broker, rig.process, rig.start, rig.ctx = broker, process, start, ctx
    try:
        yield rig
    finally:
        process.release.set()
        for worker, thread in started:
            worker.request_stop()
            thread.join(10)
        broker.close()
        ctx.term()


def test_ready_job_result_then_ready_again(rig, tmp_path):
    photo = tmp_path / "p.png"
    photo.write_bytes(png_photo(64, 48))
    worker = rig.start()
    peer, ready = rig.broker.recv()
    assert ready["type"] == "ready"
    info = ready["worker"]
    assert info["id"] == worker.name and info["id"].endswith("-3") and info["index"] == 3
    assert (info["engine"], info["model_loaded"], info["busy"], info["inline_images"]) == \
        ("fake", True, False, False)
    rig.broker.send_job(peer, "job-1", str(photo), attempt=2)
    _, result = rig.broker.recv()
    assert result["type"] == "result" and (result["job_id"], result["attempt"]) == ("job-1", 2)
    assert set(result["masks"]) == {wire.UPPER, wire.LOWER} and result["engine"] == "fake"
    assert set(result["timings"]) == {"decode_ms", "process_ms", "stages_ms"}
    # a process function without stage times (this fake) still reports the decode
    assert set(result["timings"]["stages_ms"]) == {"decode"}
    assert rig.process.shapes == [(48, 64, 3)]
    assert rig.broker.recv()[1]["type"] == "ready"


def test_heartbeats_keep_coming_while_a_job_runs(rig):
    rig.process.release.clear()
    rig.start()
    peer, _ = rig.broker.recv()
    rig.broker.send_job(peer, "slow", image=png_photo())
    assert rig.process.started.wait(10)
    beats = []
    while len(beats) < 3:
        _, msg = rig.broker.recv(skip_heartbeats=False)
        assert msg["type"] == "heartbeat", msg["type"]
        beats.append(msg["worker"])
    assert all(b["busy"] and b["job_id"] == "slow" for b in beats)
    # A job sent while busy is handed straight back.
    rig.broker.send_job(peer, "extra", image=png_photo())
    _, refused = rig.broker.recv()
    assert (refused["type"], refused["job_id"], refused["reason"], refused["retryable"]) == \
        ("failed", "extra", "worker_busy", True)
    rig.process.release.set()
    assert rig.broker.recv()[1]["job_id"] == "slow"


def test_broker_silence_makes_the_worker_reconnect_and_announce_itself(rig):
    worker = rig.start()
    first_peer, _ = rig.broker.recv()
    # The broker never answers: after the expiry (0.5 s) a fresh socket says ready again.
    second_peer, again = rig.broker.recv(timeout=10)
    assert again["type"] == "ready" and again["worker"]["id"] == worker.name
    assert second_peer != first_peer


def test_stop_while_busy_finishes_the_job_then_disconnects(rig):
    rig.process.release.clear()
    worker = rig.start()
    peer, _ = rig.broker.recv()
    rig.broker.send_job(peer, "job-1", image=png_photo())
    assert rig.process.started.wait(10)
    worker.request_stop()
    threading.Timer(0.3, rig.process.release.set).start()
    assert [rig.broker.recv()[1]["type"] for _ in range(2)] == ["result", "disconnect"]
    assert not worker.abandoned


def test_stop_hands_the_job_back_after_the_drain_bound(rig):
    rig.process.release.clear()
    worker = rig.start(drain_s=0.3)
    peer, _ = rig.broker.recv()
    rig.broker.send_job(peer, "job-1", image=png_photo(), attempt=1)
    assert rig.process.started.wait(10)
    worker.request_stop()
    _, failed = rig.broker.recv()
    assert (failed["type"], failed["job_id"], failed["attempt"], failed["reason"],
            failed["retryable"]) == ("failed", "job-1", 1, "worker_shutdown", True)
    assert rig.broker.recv()[1]["type"] == "disconnect"
    assert worker.abandoned


def test_inline_worker_uses_the_bytes_and_reports_missing_ones(rig):
    rig.start(WORKER_INLINE_IMAGES="true")
    peer, ready = rig.broker.recv()
    assert ready["worker"]["inline_images"] is True
    rig.broker.send_job(peer, "a", image=png_photo(40, 30))
    assert rig.broker.recv()[1]["type"] == "result"
    rig.broker.recv()
    rig.broker.send_job(peer, "b", path="/somewhere/else.png", image=None)
    _, failed = rig.broker.recv()
    assert (failed["reason"], failed["retryable"]) == ("image_missing", False)


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
