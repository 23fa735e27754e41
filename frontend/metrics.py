"""GET /metrics: the service's figures in the Prometheus text format.

Every process's figures reach the front end through the broker's ``stats`` map
(the one the front end already asks for /stats and /health): workers send their
stage times with each result, the uploader sends its counters, upload times
and spool depth with each heartbeat, and the broker adds its own queue, job and
worker figures. :class:`StatsCollector` turns one such snapshot, plus the
refusals only the front end sees (:class:`FrontendCounters`), into metric
families; ``prometheus_client`` writes the text format. See docs/metrics.md for
why this, rather than prometheus_client's multiprocess mode.

Names, all prefixed ``qmc_``, are listed in docs/metrics.md. A counter keeps its
meaning across restarts where the broker journals it (jobs accepted, done,
failed, requeued) or the uploader stores it (uploads); the histograms and the
front end's refusal counters start afresh when their process restarts, which
Prometheus' ``rate()`` handles as a counter reset.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
)

from common import VERSION, wire
from common.histogram import valid_snapshot

#: Prefix of every metric name.
PREFIX = "qmc"

#: Label value when a fact is unknown (no worker connected, broker silent).
NONE = "none"


class FrontendCounters:
    """What only the front end sees: POST /process refusals and duplicates."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.refused: dict[tuple[str, str], int] = {}
        self.duplicates = 0

    def refuse(self, status: int, reason: str) -> None:
        with self._lock:
            key = (str(status), reason)
            self.refused[key] = self.refused.get(key, 0) + 1

    def duplicate(self) -> None:
        with self._lock:
            self.duplicates += 1

    def snapshot(self) -> tuple[dict[tuple[str, str], int], int]:
        with self._lock:
            return dict(self.refused), self.duplicates


class StatsCollector:
    """Metric families from one broker stats snapshot (None: the broker is silent)."""

    def __init__(self, stats: dict[str, Any] | None, frontend: FrontendCounters) -> None:
        self.stats, self.frontend = stats, frontend

    def collect(self) -> Iterator[Metric]:
        yield _gauge("broker_up", "1 when the broker answered this scrape", self.stats is not None)
        yield from self._frontend()
        stats = self.stats or {}
        yield self._info(stats)
        if self.stats is None:
            return
        yield from self._jobs(stats)
        yield from self._queue(stats)
        yield from self._workers(stats)
        yield from self._uploads(stats)
        yield from self._timings(stats.get("timings"))

    def _frontend(self) -> Iterator[Metric]:
        refused, duplicates = self.frontend.snapshot()
        family = CounterMetricFamily(f"{PREFIX}_jobs_refused", "POST /process requests refused, "
                                     "by HTTP status and reason", labels=["status", "reason"])
        for (status, reason), count in sorted(refused.items()):
            family.add_metric([status, reason], count)
        yield family
        yield _counter("jobs_duplicate", "POST /process requests for a job_id already known "
                       "(200, not queued again)", duplicates)

    def _info(self, stats: dict[str, Any]) -> Metric:
        family = InfoMetricFamily(f"{PREFIX}_build", "version, and the engine, precision and "
                                  "backend of the connected workers",
                                  labels=["version", "engine", "precision", "backend"])
        combos = {(str(w.get("engine") or NONE), str(w.get("precision") or NONE),
                   str(w.get("backend") or NONE)) for w in _per_worker(stats)}
        for engine, precision, backend in sorted(combos or {(NONE, NONE, NONE)}):
            family.add_metric([VERSION, engine, precision, backend], {})
        return family

    def _jobs(self, stats: dict[str, Any]) -> Iterator[Metric]:
        yield _counter("jobs_accepted", "jobs accepted (journalled, answered 202)",
                       stats.get("accepted"))
        yield _counter("jobs_done", "jobs delivered to the asset service",
                       stats.get("jobs_processed"))
        yield _counters_by("jobs_failed", "jobs that ended failed, by reason", "reason",
                           stats.get("failed_by_reason"))
        yield _counter("jobs_redelivered", "failed jobs delivered later by uploader redrive",
                       stats.get("redelivered"))
        yield _counter("jobs_requeued", "jobs put back at the head of the queue (worker lost, "
                       "deadline, retryable failure)", stats.get("retried"))

    def _queue(self, stats: dict[str, Any]) -> Iterator[Metric]:
        yield _gauge("queue_depth", "jobs waiting in the queue", stats.get("queue_current"))
        yield _gauge("queue_max", "queue limit (QUEUE_MAX_SIZE)", stats.get("queue_max"))
        yield _gauge("jobs_in_flight", "jobs a worker is running", stats.get("in_flight"))
        yield _gauge("handoff_pending", "results waiting for the uploader to take them",
                     stats.get("pending_handoff"))
        yield _gauge("broker_uptime_seconds", "seconds since the broker started",
                     stats.get("uptime_sec"))

    def _workers(self, stats: dict[str, Any]) -> Iterator[Metric]:
        workers = _per_worker(stats)
        yield _gauge("workers_connected", "live workers (all engines)", len(workers))
        by_engine = GaugeMetricFamily(f"{PREFIX}_workers_alive", "live workers, by engine",
                                      labels=["engine"])
        engines: dict[str, int] = {}
        for w in workers:
            engine = str(w.get("engine") or NONE)
            engines[engine] = engines.get(engine, 0) + 1
        for engine, count in sorted(engines.items()):
            by_engine.add_metric([engine], count)
        yield by_engine
        yield _gauge("workers_busy", "workers running a job",
                     sum(1 for w in workers if w.get("busy") is True))
        yield _gauge("segmentation_ready", "1 when a worker with a loaded model is connected",
                     stats.get("segmentation_ready") is True)
        yield _gauge("no_worker_seconds", "seconds since a worker was last alive (0 while one "
                     "is); POST /process refuses jobs beyond no_worker_grace_seconds",
                     stats.get("no_worker_s"))
        yield _gauge("no_worker_grace_seconds", "NO_WORKER_GRACE_S",
                     stats.get("no_worker_grace_s"))

    def _uploads(self, stats: dict[str, Any]) -> Iterator[Metric]:
        yield _gauge("uploader_alive", "1 while the uploader is connected to the broker",
                     stats.get("uploader_alive") is True)
        yield _counters_by("upload_attempts", "HTTP attempts to the asset service, by status "
                           "class (error: no answer)", "status_class",
                           stats.get("upload_attempts"))
        yield _counter("uploads_delivered", "jobs the uploader delivered",
                       stats.get("upload_delivered"))
        yield _counter("upload_retries", "upload attempts retried after a transient failure",
                       stats.get("upload_retried"))
        yield _counter("upload_dead_letters", "jobs whose upload failed finally (dead letters)",
                       stats.get("dead_lettered"))
        yield _gauge("upload_spool_depth", "jobs in the uploader's spool",
                     stats.get("spool_depth"))
        yield _gauge("upload_dead_letters_held", "jobs in the dead-letter folder now",
                     stats.get("dead_letters_held"))

    def _timings(self, timings: Any) -> Iterator[Metric]:
        timings = _mapping(timings)
        stages = HistogramMetricFamily(f"{PREFIX}_stage_seconds", "time per stage of a job: "
                                       "the worker's stages, and one upload attempt",
                                       labels=["stage"])
        for stage in (*wire.STAGES, "upload"):
            key = "upload" if stage == "upload" else f"stage_{stage}"
            if valid_snapshot(timings.get(key)):
                stages.add_metric([stage], *_histogram(timings[key]))
        yield stages
        for key, name, doc in (
                ("queue_wait", "queue_wait_seconds", "time from accept to first dispatch"),
                ("end_to_end", "job_end_to_end_seconds", "time from accept to delivery")):
            family = HistogramMetricFamily(f"{PREFIX}_{name}", doc)
            if valid_snapshot(timings.get(key)):
                family.add_metric([], *_histogram(timings[key]))
            yield family


def render(stats: dict[str, Any] | None, frontend: FrontendCounters,
           accept: str | None = None) -> tuple[bytes, str]:
    """The /metrics body and its Content-Type: the format the scraper's ``Accept``
    header asks for (OpenMetrics, or the classic text format 0.0.4 by default)."""
    encode, content_type = choose_encoder(accept or "")
    return encode(StatsCollector(stats, frontend)), content_type  # any object with collect()


def _histogram(snapshot: dict[str, Any]) -> tuple[list[tuple[str, float]], float]:
    buckets = [(_le(le), count) for le, count in zip(snapshot["le"], snapshot["counts"])]
    buckets.append(("+Inf", snapshot["count"]))
    return buckets, snapshot["sum"]


def _le(bound: float) -> str:
    return repr(float(bound))


def _per_worker(stats: dict[str, Any]) -> list[dict[str, Any]]:
    return [w for w in _mapping(stats.get("per_worker")).values() if isinstance(w, dict)]


def _mapping(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _counter(name: str, doc: str, value: Any) -> Metric:
    family = CounterMetricFamily(f"{PREFIX}_{name}", doc)
    if _number(value):
        family.add_metric([], value)
    return family


def _counters_by(name: str, doc: str, label: str, counts: Any) -> Metric:
    """One counter per key of the ``counts`` map (``{label value: count}``)."""
    family = CounterMetricFamily(f"{PREFIX}_{name}", doc, labels=[label])
    for key, count in sorted(_mapping(counts).items()):
        if _number(count):
            family.add_metric([str(key)], count)
    return family


def _gauge(name: str, doc: str, value: Any) -> Metric:
    family = GaugeMetricFamily(f"{PREFIX}_{name}", doc)
    if isinstance(value, bool):
        value = int(value)
    if _number(value):
        family.add_metric([], value)
    return family
