"""The uploader's half of the hand-off, without sockets: spool durably, then ack (no ack on a
disk fault: the broker sends again); a duplicate is acked again, not spooled twice, its final
state repeated; what can never be uploaded is acked and reported ``failed`` (docs/uploader.md)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from common.ids import is_valid_id
from common.logs import event
from common.wire import encode

from .runner import Stores
from .spool import SpoolError

log = logging.getLogger("uploader.core")


class UploaderCore:
    """Answers the broker using ``stores``; ``submit(job_id)`` queues a spooled
    job for upload. ``guard`` is held by the upload threads while they settle a
    job, so a job is never seen as neither spooled nor delivered."""

    def __init__(self, stores: Stores, submit: Callable[[str], object],
                 guard: threading.Lock) -> None:
        self.stores, self.submit, self.guard = stores, submit, guard

    def ready(self) -> bytes:
        """The ``ready`` that opens each new connection."""
        return encode("ready", counters=self.stores.counters.read())

    def heartbeat(self, timings: dict[str, dict]) -> bytes:
        """A heartbeat with the figures the broker passes on to /stats and /metrics."""
        try:
            spool = self.stores.spool.depths()
        except OSError:
            spool = {}
        return encode("heartbeat", counters=self.stores.counters.read(), timings=timings,
                      spool=spool)

    def handle(self, msg: dict[str, Any]) -> list[bytes]:
        """The frames that answer ``msg``, a decoded message from the broker."""
        if msg["type"] == "deliver":
            job = msg["job"]
            job_id = job.get("job_id") if isinstance(job, dict) else None
            try:
                return self._deliver(job, job_id, msg["masks"])
            except Exception:  # noqa: BLE001 - not acked, so the broker re-sends it
                event(log, "deliver_internal_error", logging.ERROR, exc_info=True, job_id=job_id)
        elif msg["type"] != "heartbeat":
            event(log, "broker_unexpected_message", logging.WARNING, type=msg["type"])
        return []

    def _deliver(self, job: Any, job_id: Any, masks: Any) -> list[bytes]:
        if not isinstance(job_id, str) or not is_valid_id(job_id):
            # no file may be named after it: the state goes out at once, not via the outbox
            why, job_id = "job_id is not a valid id", str(job_id)[:128]
            event(log, "deliver_refused", logging.ERROR, job_id=job_id, error=why)
            state = encode("state", job_id=job_id, state="failed",
                           reason="upload_invalid_delivery", detail=why)
            return [encode("ack", job_id=job_id), state]
        with self.guard:
            known = "delivered" if job_id in self.stores.ledger else self.stores.spool.where(job_id)
            try:
                if known is None:
                    self.stores.spool.add(job, masks)
            except SpoolError as exc:
                event(log, "deliver_refused", logging.ERROR, job_id=job_id, error=str(exc))
                self.stores.outbox.put(job_id, "failed", "upload_invalid_delivery", str(exc))
                return [encode("ack", job_id=job_id)]
            except OSError as exc:  # disk trouble: no ack, the broker re-sends later
                event(log, "upload_spool_failed", logging.ERROR, job_id=job_id,
                      error=f"{type(exc).__name__}: {exc}")
                return []
        if known is None:
            event(log, "upload_spooled", job_id=job_id, masks=sorted(masks))
        else:
            event(log, "deliver_duplicate", job_id=job_id, known=known)
            self._restate(job_id, known)
        if known in (None, "spooled"):  # for a duplicate, a no-op unless a hand-off broke off
            self.submit(job_id)
        return [encode("ack", job_id=job_id)]

    def _restate(self, job_id: str, known: str) -> None:
        """Repeat a finished job's final state (states are idempotent for the broker)."""
        if known == "delivered":
            self.stores.outbox.put(job_id, "done")
        elif known == "dead":
            try:
                dead = self.stores.spool.load(job_id, dead=True).manifest.get("dead") or {}
            except (SpoolError, OSError, ValueError):
                return  # being redriven right now; its new state will follow
            self.stores.outbox.put(job_id, "failed", dead.get("reason"), dead.get("detail"))
