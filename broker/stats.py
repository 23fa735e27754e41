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
- ``engine``: the engine name connected workers report (``"parser,schp"`` when they
  differ, None when no worker is connected); ``engines`` lists them.
- ``uptime_sec``: whole seconds since the broker started.
- ``failed_by_reason`` / ``redelivered``: final failures by reason (never lowered) and
  dead letters delivered later by ``uploader redrive`` (``failed`` is their difference).
- ``no_worker_s``: whole seconds since a worker was last alive (0 while one is);
  ``no_worker_grace_s``: after this long, new jobs are refused (``no_worker``).
- ``upload_attempts``: the uploader's HTTP attempts by status class (``2xx`` ... ``5xx``,
  ``error`` for no answer); ``spool_depth`` / ``dead_letters_held``: jobs in its spool
  and dead-letter folders.
- ``timings``: duration histograms (:mod:`common.histogram`): ``queue_wait`` (accept to
  first dispatch), ``end_to_end`` (accept to delivery), ``stage_<name>`` per worker
  stage (:data:`common.wire.STAGES`), and the uploader's ``upload`` (one HTTP attempt).
  They live in memory: a broker (or uploader) restart starts them afresh.
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
    attempts = {key[len("attempts_"):]: value for key, value in uploaded.items()
                if key.startswith("attempts_")}
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
        "uptime_sec": int(max(0.0, now - core.started_at)),
        "failed_by_reason": dict(book.counters.failed_by_reason),
        "redelivered": book.counters.redelivered,
        "no_worker_s": int(core.no_worker_s(now)),
        "no_worker_grace_s": core.queue_cfg.no_worker_grace_s,
        "upload_attempts": attempts,
        "spool_depth": core.uploader_spool.get("depth"),
        "dead_letters_held": core.uploader_spool.get("dead"),
        "timings": {**core.timings.snapshot(), **core.uploader_timings},
        "per_worker": {w.name: w.stats(now) for w in workers},
        "journal": core.journal_stats() if core.journal_stats is not None else None,
    }
