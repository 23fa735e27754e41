"""The bodies of GET /health and GET /stats, computed from the broker's ``stats`` map.

Pure functions, no I/O. The broker owns the stats' content; the front end
passes it through (/stats) and reads only these facts from it (/health):

- ``queue_current``: queued jobs (``queue_size`` is read as a fallback);
- ``workers``: the number of live workers, or a list / map of per-worker maps;
- ``per_worker``: a list / map of per-worker maps, each optionally with
  ``model_loaded`` (bool), ``engine`` (str) and ``alive`` (bool, default true);
- ``segmentation_ready`` / ``engine``: used as given when the broker sets them;
- ``uploader_alive``: False makes /health ``degraded`` (absent counts as alive).
- ``precision``, ``backend`` and their ``*_because`` (SCHP workers): passed on from the
  first worker with a loaded model that reports them.
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
    infos = worker_infos(stats)
    alive = alive_workers(stats, infos)
    ready = stats.get("segmentation_ready")
    if not isinstance(ready, bool):
        ready = any(info.get("model_loaded") is True for info in infos)
    problems = []
    if alive == 0:
        problems.append("no segmentation worker is alive")
    if stats.get("uploader_alive") is False:
        problems.append("the uploader is not connected: masks cannot be delivered")
    body = {
        "status": "degraded" if problems else "ok",
        "queue_size": stats.get("queue_current", stats.get("queue_size")),
        "segmentation_ready": ready and alive > 0,
        "engine": stats.get("engine") or _engine_of(infos),
        "workers": alive,
        **_runtime_of(infos),
    }
    if problems:
        body["detail"] = "; ".join(problems)
        return 503, body
    return 200, body


def unreachable_health(detail: str) -> dict[str, Any]:
    """GET /health when the broker does not answer (served with 503)."""
    return {"status": "degraded", "queue_size": None, "segmentation_ready": False,
            "engine": None, "workers": 0, "detail": detail}


def worker_infos(stats: dict[str, Any]) -> list[dict[str, Any]]:
    """The per-worker maps in ``stats`` (from ``per_worker``, else from ``workers``)."""
    for key in ("per_worker", "workers"):
        value = stats.get(key)
        if isinstance(value, dict):
            value = list(value.values())
        if isinstance(value, list):
            return [info for info in value if isinstance(info, dict)]
    return []


def alive_workers(stats: dict[str, Any], infos: list[dict[str, Any]]) -> int:
    """Live workers: the ``workers`` count when it is one, else the live per-worker maps."""
    count = stats.get("workers")
    if isinstance(count, int) and not isinstance(count, bool):
        return max(count, 0)
    return sum(1 for info in infos if info.get("alive", True) is not False)


def _runtime_of(infos: list[dict[str, Any]]) -> dict[str, str]:
    """Precision/backend facts of the first loaded worker that has them (else none)."""
    ranked = sorted(infos, key=lambda info: info.get("model_loaded") is not True)
    for info in ranked:
        facts = {k: info[k] for k in RUNTIME_KEYS if isinstance(info.get(k), str)}
        if facts:
            return facts
    return {}


def _engine_of(infos: list[dict[str, Any]]) -> str | None:
    """The engine of the first worker with a loaded model (else of any worker)."""
    ranked = sorted(infos, key=lambda info: info.get("model_loaded") is not True)
    for info in ranked:
        if isinstance(info.get("engine"), str):
            return info["engine"]
    return None
