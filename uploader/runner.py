"""Delivering one stored job and settling it: the part shared by the service
(spooled jobs) and ``python -m uploader redrive`` (dead-lettered jobs).

Settling a delivered job, in this order so a crash at any point is safe:
ledger marker (durable) -> temp files under TEMP_FOLDER -> spool entry ->
``delivered`` counter -> ``done`` state. A job that failed finally is
dead-lettered with its last status and body, then reported ``failed``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from common.config import Settings
from common.histogram import Histograms
from common.logs import event, redact

from .delivery import AttemptOutcome, Deliverer, DeliveryHooks, DeliveryResult, Interrupted
from .outbox import Outbox
from .records import Counters, Ledger, attempt_class
from .spool import Spool, SpooledJob

log = logging.getLogger("uploader.runner")


@dataclass
class Stores:
    """The uploader's on-disk state under ``<state_dir>/uploader``."""
    root: Path
    spool: Spool
    ledger: Ledger
    counters: Counters
    outbox: Outbox

    @classmethod
    def open(cls, settings: Settings) -> Stores:
        """Open (creating as needed, 0700) the stores for ``settings``."""
        root = settings.state_dir / "uploader"
        return cls(root, Spool(root, settings.temp_folder),
                   Ledger(root / "delivered", settings.queue.remember_finished),
                   Counters(root / "counters.json"), Outbox(root / "outbox"))


class _Hooks(DeliveryHooks):
    """Reports attempts to the outbox, the manifest, the counters and the log."""

    def __init__(self, runner: JobRunner, entry: SpooledJob):
        self.runner, self.entry = runner, entry

    # Bookkeeping here is informative; a disk error in it must not turn an
    # answered request (perhaps a 2xx) into a failure, so it is only logged.

    def attempt_started(self, job_id: str, number: int) -> None:
        event(log, "upload_attempt", logging.DEBUG, job_id=job_id, attempt=number)
        try:
            self.runner.stores.outbox.put(job_id, "uploading", None, f"attempt {number}")
        except OSError as exc:
            event(log, "outbox_write_failed", logging.ERROR, job_id=job_id, error=str(exc))

    def attempt_finished(self, job_id: str, outcome: AttemptOutcome) -> None:
        record = outcome.record()
        record["n"] = len(self.entry.attempts) + 1  # counted over the job's whole life
        self.entry.attempts.append(record)
        self.runner.observe_attempt(outcome)
        try:
            self.runner.stores.spool.save(self.entry)
        except OSError as exc:
            event(log, "manifest_write_failed", logging.ERROR, job_id=job_id, error=str(exc))
        try:
            self.runner.stores.counters.bump(f"attempts_{attempt_class(outcome.status)}")
        except OSError as exc:
            event(log, "counter_write_failed", logging.ERROR, job_id=job_id, error=str(exc))

    def retry_scheduled(self, job_id: str, outcome: AttemptOutcome, wait_s: float) -> None:
        self.runner.stores.counters.bump("retried")
        event(log, "upload_retry", logging.WARNING, job_id=job_id, attempt=outcome.number,
              status=outcome.status, error=outcome.error, wait_s=round(wait_s, 4))


class JobRunner:
    """Delivers stored jobs. ``guard`` serialises settling with the service's
    duplicate check, so a job is never seen as neither stored nor delivered."""

    def __init__(self, stores: Stores, deliverer: Deliverer) -> None:
        self.stores = stores
        self.deliverer = deliverer
        self.guard = threading.Lock()
        #: time per HTTP attempt (in memory; reported to the broker for /metrics)
        self.timings = Histograms()
        self._timings_lock = threading.Lock()

    def observe_attempt(self, outcome: AttemptOutcome) -> None:
        with self._timings_lock:
            self.timings.observe("upload", outcome.elapsed_s)

    def timings_snapshot(self) -> dict[str, dict]:
        with self._timings_lock:
            return self.timings.snapshot()

    def run(self, job_id: str, redrive: bool = False,
            max_attempts: int | None = None) -> DeliveryResult | None:
        """Deliver spooled job ``job_id`` (dead-lettered with ``redrive``) and settle it.

        A spooled job resumes its attempt count and backoff; a redrive starts
        afresh. Returns None when the ledger shows the job was already
        delivered (only the clean-up is finished). Raises :class:`Interrupted`
        when the service stops mid-wait (the job stays spooled).
        """
        entry = self.stores.spool.load(job_id, dead=redrive)
        if job_id in self.stores.ledger:
            self._settle_delivered(entry, None)
            return None
        before = 0 if redrive else len(entry.attempts)
        try:
            result = self.deliverer.deliver(entry.job, entry.files(), _Hooks(self, entry),
                                            attempts_before=before, max_attempts=max_attempts)
        except Interrupted:
            raise
        except Exception as exc:  # an internal fault must not lose or wedge the job  # noqa: BLE001
            event(log, "upload_internal_error", logging.ERROR, exc_info=True, job_id=job_id)
            detail = redact(f"{type(exc).__name__}: {exc}")[:500]
            result = DeliveryResult(False, AttemptOutcome(before + 1, None, error=detail),
                                    "upload_internal_error", detail)
        if result.ok:
            self._settle_delivered(entry, result)
        else:
            self._settle_failed(entry, result, redrive)
        return result

    def _settle_delivered(self, entry: SpooledJob, result: DeliveryResult | None) -> None:
        job_id = entry.job_id
        with self.guard:
            self.stores.ledger.add(job_id)
            removed = self.stores.spool.remove_temp_files(entry)
            self.stores.spool.remove(entry)
        if result is not None:
            self.stores.counters.bump("delivered")
        self.stores.outbox.put(job_id, "done")
        event(log, "upload_delivered", job_id=job_id, attempts=len(entry.attempts),
              status=result.last.status if result else None, temp_files_removed=len(removed))

    def _settle_failed(self, entry: SpooledJob, result: DeliveryResult, redrive: bool) -> None:
        last = result.last
        info = {"reason": result.reason, "detail": result.detail, "status": last.status,
                "body": last.body, "error": last.error}
        with self.guard:
            self.stores.spool.dead_letter(entry, info)
        if not redrive:
            self.stores.counters.bump("dead_lettered")
        self.stores.outbox.put(entry.job_id, "failed", result.reason, result.detail)
        event(log, "upload_dead_lettered", logging.ERROR, job_id=entry.job_id,
              reason=result.reason, status=last.status, detail=result.detail,
              attempts=len(entry.attempts), redrive=redrive)


def make_runner(settings: Settings, sleep: Callable[[float], None]) -> JobRunner:
    """A runner over this settings' stores, sleeping between retries with ``sleep``."""
    return JobRunner(Stores.open(settings), Deliverer(settings.upload, sleep=sleep))
