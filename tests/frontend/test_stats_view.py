"""/health and /stats bodies from the broker's stats map (as the real broker core builds it)."""

from __future__ import annotations

from typing import Any

from frontend.stats_view import health_body, stats_body, unreachable_health
from tests.support.stub_broker import StubBroker


def broker_stats(workers: dict[str, dict[str, Any]] | None = None, uploader: bool = True,
                 ) -> dict[str, Any]:
    """The stats of a broker with these workers (name -> WorkerInfo fields) connected."""
    stub = StubBroker()
    for name, info in ({"w0": {"engine": "schp"}} if workers is None else workers).items():
        stub.add_worker(name, takes_jobs=False, **info)
    if uploader:
        stub.add_uploader()
    return stub.stats()


def test_healthy():
    assert health_body(broker_stats()) == (200, {
        "status": "ok", "queue_size": 0, "segmentation_ready": True, "engine": "schp",
        "workers": 1})


def test_the_broker_decides_engine_and_readiness():
    stats = broker_stats({"w0": {"engine": "parser", "model_loaded": False},
                          "w1": {"engine": "schp", "model_loaded": False}})
    status, body = health_body(stats)
    assert status == 200
    assert (body["workers"], body["engine"], body["segmentation_ready"]) == (2, "parser,schp", False)


def test_queue_size_is_the_queued_jobs():
    stub = StubBroker()
    stub.add_worker("w0", takes_jobs=False)
    stub.add_uploader()
    for job_id in ("a", "b", "c"):
        stub.submit(job_id)
    assert health_body(stub.stats())[1]["queue_size"] == 3


def test_no_live_worker_is_degraded():
    status, body = health_body(broker_stats({}))
    assert status == 503
    assert (body["status"], body["segmentation_ready"], body["workers"]) == ("degraded", False, 0)
    assert "no segmentation worker" in body["detail"]


def test_no_uploader_is_degraded_even_with_workers():
    status, body = health_body(broker_stats(uploader=False))
    assert status == 503 and body["status"] == "degraded" and body["workers"] == 1
    assert "uploader" in body["detail"] and "worker" not in body["detail"]
    status, body = health_body(broker_stats({}, uploader=False))
    assert status == 503 and "no segmentation worker" in body["detail"]
    assert "uploader" in body["detail"]
    assert health_body(broker_stats())[0] == 200


def test_unreachable():
    body = unreachable_health("no answer")
    assert (body["status"], body["workers"], body["detail"]) == ("degraded", 0, "no answer")


def test_stats_body_keeps_extras_and_fills_required_keys():
    body = stats_body({"queue_current": 1, "extra": [1]})
    assert body["extra"] == [1] and body["queue_max"] is None and body["queue_current"] == 1
    stats = broker_stats()
    assert stats_body(stats) == stats


def test_health_says_how_schp_runs_and_why():
    body = health_body(broker_stats({
        "w0": {"engine": "pose", "model_loaded": False, "precision": "fp32"},
        "w1": {"engine": "schp", "model_loaded": True, "precision": "bf16", "backend": "openvino",
               "precision_because": "SCHP_PRECISION=auto and the CPU has bf16 matrix units",
               "backend_because": "SCHP_BACKEND=auto and the device is cpu"}}))[1]
    assert (body["precision"], body["backend"]) == ("bf16", "openvino")
    assert body["precision_because"].startswith("SCHP_PRECISION=auto")
    assert body["backend_because"] == "SCHP_BACKEND=auto and the device is cpu"
    assert "precision" not in health_body(broker_stats())[1]  # engines without them
