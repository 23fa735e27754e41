"""The hand-off to the uploader, a collaborator of the broker core (no sockets, no clock reads).

A job whose masks are stored is *pending* until the uploader acknowledges it
(``ack``); pending deliveries are sent when the uploader connects or
reconnects (``ready``, or a heartbeat from a new connection) and again every
:data:`DELIVERY_RESEND_S` seconds until acknowledged. ``state`` messages move
the job to ``uploading``, ``done`` or ``failed``.

:class:`broker.state.BrokerCore` holds the :class:`Handoff` and sends what it returns.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from broker.checks import MAX_DETAIL, MAX_REASON, text
from broker.jobs import JobBook, JobEntry, is_redelivery
from broker.peers import UploaderEntry
from broker.protocol import UPLOADER, Out
from common import wire
from common.histogram import Histograms
from common.logs import event

#: Seconds after which a hand-off the uploader has not acknowledged is sent again.
DELIVERY_RESEND_S = 10.0

log = logging.getLogger("broker")


class Handoff:
    """The connected uploader and the deliveries it has not acknowledged. ``commit`` journals
    and applies one record to ``book``; ``timings`` gets ``end_to_end``."""

    def __init__(self, book: JobBook, commit: Callable[[dict[str, Any]], bool],
                 timings: Histograms) -> None:
        self.book, self.commit, self.timings = book, commit, timings
        self.uploader: UploaderEntry | None = None   #: connected now
        #: the last uploader heard from (none yet: empty), kept once it is lost for ``stats``
        self.last_report = UploaderEntry(peer=b"", last_seen=0.0)
        self.sent_at: dict[str, float] = {}   #: job_id -> when its deliver was last sent

    def handle(self, peer: bytes, msg: dict[str, Any], now: float) -> list[Out]:
        """One decoded message from the uploader's DEALER; returns the deliveries to send."""
        kind = msg["type"]
        if kind in ("ready", "heartbeat"):
            return self._hello(peer, msg, now)
        if kind == "ack":
            self._on_ack(msg, now)
        elif kind == "state":
            self._on_upload_state(msg, now)
        else:
            event(log, "invalid_frame", logging.WARNING, channel=UPLOADER,
                  error=f"unexpected message type {kind!r}")
        return []

    def tick(self, now: float, silent_before: float) -> list[Out]:
        """Drop an uploader not heard from since ``silent_before``; re-send deliveries
        unacknowledged for too long."""
        if self.uploader is not None and self.uploader.last_seen < silent_before:
            event(log, "uploader_lost", logging.WARNING, pending=len(self.book.pending))
            self.uploader = None
        return self.deliver([self.book.jobs[job_id] for job_id in self.book.pending
                             if self.sent_at.get(job_id, float("-inf")) + DELIVERY_RESEND_S <= now],
                            now)

    def _hello(self, peer: bytes, msg: dict[str, Any], now: float) -> list[Out]:
        adopt = self.uploader is None or self.uploader.peer != peer
        if adopt:
            self.uploader = self.last_report = UploaderEntry(peer, now)
            event(log, "uploader_joined", pending=len(self.book.pending))
        self.last_report.update(msg.get("counters"), now, msg.get("timings"), msg.get("spool"))
        if not adopt and msg["type"] != "ready":
            return []
        self.sent_at.clear()
        return self.deliver([self.book.jobs[job_id] for job_id in self.book.pending], now)

    def deliver(self, entries: list[JobEntry], now: float) -> list[Out]:
        """A ``deliver`` for each job (whose masks are stored); none while no uploader is here."""
        if self.uploader is None:
            return []
        for entry in entries:
            self.sent_at[entry.job_id] = now
        return [Out(UPLOADER, self.uploader.peer, wire.encode(
            "deliver", job=dict(entry.job), masks=dict(entry.masks or {}))) for entry in entries]

    def _on_ack(self, msg: dict[str, Any], now: float) -> None:
        job_id = msg["job_id"]
        self.sent_at.pop(job_id, None)
        if isinstance(job_id, str) and job_id in self.book.pending:
            self.commit({"op": "handed", "job_id": job_id, "t": now})
            event(log, "job_handed_off", job_id=job_id)

    def _on_upload_state(self, msg: dict[str, Any], now: float) -> None:
        entry, state = self.book.lookup(msg["job_id"]), msg["state"]
        if state not in wire.UPLOAD_STATES:
            event(log, "invalid_frame", logging.WARNING, channel=UPLOADER,
                  job_id=text(msg["job_id"], 130), error=f"unknown job state {state!r}")
            return
        if entry is None or entry.masks is None:
            return  # a job this broker has forgotten
        if entry.state in wire.FINAL_STATES and not is_redelivery(entry, state):
            return  # a repeat
        first_delivery = state == "done" and not is_redelivery(entry, state)
        reason, detail = text(msg.get("reason"), MAX_REASON), text(msg.get("detail"), MAX_DETAIL)
        self.commit({"op": "upstate", "job_id": entry.job_id, "state": state,
                     "reason": reason, "detail": detail, "t": now})
        if first_delivery and entry.submitted_at is not None:
            self.timings.observe("end_to_end", now - entry.submitted_at)
        if state in wire.FINAL_STATES:
            self.sent_at.pop(entry.job_id, None)
            level = logging.INFO if state == "done" else logging.WARNING
            event(log, f"job_{state}", level, job_id=entry.job_id, reason=reason, detail=detail)
