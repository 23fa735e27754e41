"""The broker's ``stats`` reply, built from the core's state (no I/O, no clock reads).

Field meanings (all figures are real; cumulative ones come from the journal
and survive broker restarts):

- ``queue_max`` / ``queue_current``: the queue limit and the jobs waiting (not in flight).
- ``in_flight``: jobs a worker is running now.
- ``workers``: connected workers; ``per_worker`` details each one.
- ``jobs_processed`` and ``delivered``: jobs that reached ``done`` (masks
  delivered to the asset service), cumulative.
- ``failed``: jobs that reached ``failed``; ``retried``: requeues; both cumulative.
- ``handed_off``: results the uploader acknowledged; ``pending_handoff``: results
  waiting for that acknowledgement.
- ``upload_retried`` / ``dead_lettered`` / ``upload_delivered``: the uploader's
  own counters as it last reported them; ``uploader_alive``: it is connected now.
- ``segmentation_ready``: at least one connected worker reports ``model_loaded``.
- ``engine``: the engine name connected workers report (``"pose,schp"`` when they
  differ, None when no worker is connected); ``engines`` lists them.
- ``journal``: ``records`` and ``fsyncs`` written since the broker started (group
  commit makes fsyncs fewer than records under load), ``bytes`` of the journal file.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # only for the type hint; stats never changes the core
    from broker.state import BrokerCore


def build_stats(core: "BrokerCore", now: float) -> dict[str, Any]:
    """The ``stats`` map for the front end's /stats and /health."""
    book, workers = core.book, core.workers.all()
    engines = sorted({str(w.info["engine"]) for w in workers if w.info.get("engine")})
    uploaded = core.uploader_counters
    return {
        "queue_max": core.queue_cfg.max_size,
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
        "uploader_alive": core.uploader is not None,
        "segmentation_ready": any(w.info.get("model_loaded") is True for w in workers),
        "engine": ",".join(engines) or None,
        "engines": engines,
        "uptime_sec": round(max(0.0, now - core.started_at), 3),
        "per_worker": {w.name: w.stats(now) for w in workers},
        "journal": core.journal_stats() if core.journal_stats is not None else None,
    }
