"""The broker's ``stats`` reply, built from the core's state (no I/O, no clock reads).

Each field is documented once, in docs/broker.md ("Stats"): cumulative figures come
from the journal and survive restarts; ``timings`` and the uploader's figures live in memory.
"""

from __future__ import annotations

from typing import Any

from broker.handoff import Handoff
from broker.jobs import JobBook
from broker.peers import WorkerEntry
from common.config import QueueSettings


def build_stats(book: JobBook, workers: list[WorkerEntry], handoff: Handoff,
                queue: QueueSettings, timings: dict[str, dict], journal: dict | None, *,
                now: float, uptime_s: float, no_worker_s: float) -> dict[str, Any]:
    """The ``stats`` map for the front end's /stats and /health: ``timings`` are the
    broker's histogram snapshots, ``journal`` the journal's figures."""
    engines = sorted({str(w.info["engine"]) for w in workers if w.info.get("engine")})
    uploaded, spool = handoff.last_report.counters, handoff.last_report.spool
    attempts = {key[len("attempts_"):]: value for key, value in uploaded.items()
                if key.startswith("attempts_")}
    return {
        "queue_max": queue.max_size,
        "queue_current": len(book.queue),
        "in_flight": len(book.in_flight),
        "workers": len(workers),
        "jobs_processed": book.counters.done,
        "delivered": book.counters.done,
        "failed": book.counters.failed,
        "retried": book.counters.retried,
        "accepted": book.counters.accepted,
        "handed_off": book.counters.handed,
        "pending_handoff": len(book.pending),
        "upload_delivered": uploaded.get("delivered", 0),
        "upload_retried": uploaded.get("retried", 0),
        "dead_lettered": uploaded.get("dead_lettered", 0),
        "uploader_alive": handoff.uploader is not None,
        "segmentation_ready": any(w.info.get("model_loaded") is True for w in workers),
        "engine": ",".join(engines) or None,
        "engines": engines,
        "uptime_sec": int(max(0.0, uptime_s)),
        "failed_by_reason": dict(book.counters.failed_by_reason),
        "redelivered": book.counters.redelivered,
        "no_worker_s": int(no_worker_s),
        "no_worker_grace_s": queue.no_worker_grace_s,
        "upload_attempts": attempts,
        "spool_depth": spool.get("depth"),
        "dead_letters_held": spool.get("dead"),
        "timings": {**timings, **handoff.last_report.timings},
        "per_worker": {w.name: w.stats(now) for w in workers},
        "journal": journal,
    }
