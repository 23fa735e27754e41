"""/health and /stats bodies from the broker's stats map."""

from __future__ import annotations

from frontend.stats_view import health_body, stats_body, unreachable_health, worker_infos
from tests.frontend.fake_broker import default_stats


def test_healthy():
    assert health_body(default_stats()) == (200, {
        "status": "ok", "queue_size": 0, "segmentation_ready": True, "engine": "schp",
        "workers": 1})


def test_workers_given_as_a_map_of_infos():
    stats = {"queue_current": 4, "workers": {"w0": {"engine": "parser", "model_loaded": True},
                                             "w1": {"engine": "parser", "alive": False}}}
    status, body = health_body(stats)
    assert status == 200
    assert (body["workers"], body["engine"], body["queue_size"]) == (1, "parser", 4)


def test_loaded_worker_decides_the_engine():
    infos = [{"engine": "parser", "model_loaded": False}, {"engine": "schp", "model_loaded": True}]
    assert health_body({"workers": 2, "per_worker": infos})[1]["engine"] == "schp"


def test_broker_flags_win():
    stats = {"workers": 1, "segmentation_ready": False, "engine": "schp"}
    assert health_body(stats)[1]["segmentation_ready"] is False


def test_no_live_worker_is_degraded():
    status, body = health_body({"workers": 0, "per_worker": [{"model_loaded": True}]})
    assert status == 503
    assert (body["status"], body["segmentation_ready"]) == ("degraded", False)
    assert "detail" in body


def test_no_uploader_is_degraded_even_with_workers():
    status, body = health_body({**default_stats(), "uploader_alive": False})
    assert status == 503 and body["status"] == "degraded" and body["workers"] == 1
    assert "uploader" in body["detail"] and "worker" not in body["detail"]
    status, body = health_body({"workers": 0, "uploader_alive": False})
    assert status == 503 and "no segmentation worker" in body["detail"]
    assert "uploader" in body["detail"]
    assert health_body({**default_stats(), "uploader_alive": True})[0] == 200


def test_unreachable():
    body = unreachable_health("no answer")
    assert (body["status"], body["workers"], body["detail"]) == ("degraded", 0, "no answer")


def test_stats_body_keeps_extras_and_fills_required_keys():
    body = stats_body({"queue_current": 1, "extra": [1]})
    assert body["extra"] == [1] and body["queue_max"] is None and body["queue_current"] == 1


def test_worker_infos_ignores_junk():
    assert worker_infos({"workers": [1, "x", {"a": 1}]}) == [{"a": 1}]
    assert worker_infos({"workers": 3}) == []


def test_health_says_how_schp_runs_and_why():
    infos = [{"engine": "pose", "model_loaded": False, "precision": "fp32"},
             {"engine": "schp", "model_loaded": True, "precision": "bf16", "backend": "openvino",
              "precision_because": "SCHP_PRECISION=auto and the CPU has bf16 matrix units",
              "backend_because": "SCHP_BACKEND=auto and the device is cpu"}]
    body = health_body({"workers": 2, "per_worker": infos})[1]
    assert (body["precision"], body["backend"]) == ("bf16", "openvino")
    assert body["precision_because"].startswith("SCHP_PRECISION=auto")
    assert body["backend_because"] == "SCHP_BACKEND=auto and the device is cpu"
    assert "precision" not in health_body(default_stats())[1]  # engines without them
