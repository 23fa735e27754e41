"""The bodies of GET /health and GET /stats, computed from the broker's ``stats`` map.

Pure functions, no I/O. The broker owns the stats' content (see
:mod:`broker.stats`); the front end passes it through (/stats) and reads only
these facts from it (/health):

- ``queue_current``: queued jobs; ``workers``: the number of live workers;
- ``segmentation_ready`` / ``engine``: as the broker decides them from its workers;
- ``uploader_alive``: False makes /health ``degraded``;
- ``per_worker`` (worker id -> map): ``precision``, ``backend`` and their ``*_because``
  (SCHP workers), passed on from the first worker with a loaded model that reports them.
"""

from __future__ import annotations

from typing import Any

#: Worker facts /health repeats when a worker reports them: how the engine runs, and why.
RUNTIME_KEYS = ("precision", "backend", "precision_because", "backend_because")

#: Keys GET /stats always carries (null when the broker's stats lack one).
STATS_KEYS = ("queue_max", "queue_current", "workers", "jobs_processed", "uptime_sec")


def stats_body(stats: dict[str, Any]) -> dict[str, Any]:
    """GET /stats: the broker's map as it is, with every :data:`STATS_KEYS` present."""
    body = dict(stats)
    for key in STATS_KEYS:
        body.setdefault(key, None)
    return body


def health_body(stats: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """GET /health from the broker's stats: ``(http_status, body)``.

    ``ok`` (200) while at least one worker and the uploader are alive, else
    ``degraded`` (503) with a ``detail`` naming what is missing.
    """
    alive = stats.get("workers") or 0
    problems = []
    if alive == 0:
        problems.append("no segmentation worker is alive")
    if not stats.get("uploader_alive"):
        problems.append("the uploader is not connected: masks cannot be delivered")
    body = {
        "status": "degraded" if problems else "ok",
        "queue_size": stats.get("queue_current"),
        "segmentation_ready": stats.get("segmentation_ready") is True and alive > 0,
        "engine": stats.get("engine"),
        "workers": alive,
        **_runtime_of(list(stats.get("per_worker", {}).values())),
    }
    if problems:
        body["detail"] = "; ".join(problems)
        return 503, body
    return 200, body


def unreachable_health(detail: str) -> dict[str, Any]:
    """GET /health when the broker does not answer (served with 503)."""
    return {"status": "degraded", "queue_size": None, "segmentation_ready": False,
            "engine": None, "workers": 0, "detail": detail}


def _runtime_of(infos: list[dict[str, Any]]) -> dict[str, str]:
    """Precision/backend facts of the first loaded worker that has them (else none)."""
    ranked = sorted(infos, key=lambda info: info.get("model_loaded") is not True)
    for info in ranked:
        facts = {k: info[k] for k in RUNTIME_KEYS if isinstance(info.get(k), str)}
        if facts:
            return facts
    return {}
