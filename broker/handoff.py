"""The hand-off to the uploader, as part of the broker core (no sockets, no clock reads).

A job whose masks are stored is *pending* until the uploader acknowledges it
(``ack``); pending deliveries are sent when the uploader connects or
reconnects (``ready``, or a heartbeat from a new connection) and again every
:data:`DELIVERY_RESEND_S` seconds until acknowledged. ``state`` messages move
the job to ``uploading``, ``done`` or ``failed``.

:class:`HandoffMixin` is mixed into :class:`broker.state.BrokerCore`, whose
plumbing (``_emit``, ``_commit``, ``_decode``, ``_lookup``, ``_flush``) and
tables (``book``, ``uploader``, ``sent_at``) it uses.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from broker.checks import MAX_DETAIL, MAX_REASON, text
from broker.jobs import FINAL_STATES, JobEntry, is_redelivery
from broker.peers import UploaderEntry
from common.logs import event

if TYPE_CHECKING:  # for type hints only
    from broker.state import Out

#: Seconds after which a hand-off the uploader has not acknowledged is sent again.
DELIVERY_RESEND_S = 10.0

#: Channel name of the uploader socket in :class:`broker.state.Out`.
UPLOADER = "uploader"

log = logging.getLogger("broker")


class HandoffMixin:
    """Uploader messages and deliveries (see the module docstring)."""

    def handle_uploader(self, peer: bytes, frame: bytes, now: float) -> list[Out]:
        """One frame from the uploader's DEALER."""
        msg = self._decode(frame, UPLOADER)
        if msg is None:
            return self._flush(now)
        kind = msg["type"]
        if kind in ("ready", "heartbeat"):
            adopt = self.uploader is None or self.uploader.peer != peer
            if adopt:
                self.uploader = UploaderEntry(peer, now)
                event(log, "uploader_joined", pending=len(self.book.pending))
            self.uploader.update(msg.get("counters"), now, msg.get("timings"), msg.get("spool"))
            self.uploader_counters = dict(self.uploader.counters)
            self.uploader_timings = dict(self.uploader.timings)
            self.uploader_spool = dict(self.uploader.spool)
            if adopt or kind == "ready":
                self.sent_at.clear()
                for job_id in self.book.pending:
                    self._deliver(self.book.jobs[job_id], now)
        elif kind == "ack":
            self._on_ack(msg, now)
        elif kind == "state":
            self._on_upload_state(msg, now)
        else:
            event(log, "invalid_frame", logging.WARNING, channel=UPLOADER,
                  error=f"unexpected message type {kind!r}")
        return self._flush(now)

    def _deliver(self, entry: JobEntry, now: float) -> None:
        if self.uploader is not None:
            self._emit(UPLOADER, self.uploader.peer, "deliver", job=dict(entry.job),
                       masks=dict(entry.masks or {}))
            self.sent_at[entry.job_id] = now

    def _on_ack(self, msg: dict[str, Any], now: float) -> None:
        job_id = msg["job_id"]
        self.sent_at.pop(job_id, None)
        if isinstance(job_id, str) and job_id in self.book.pending:
            self._commit({"op": "handed", "job_id": job_id, "t": now})
            event(log, "job_handed_off", job_id=job_id)

    def _on_upload_state(self, msg: dict[str, Any], now: float) -> None:
        entry, state = self._lookup(msg["job_id"]), msg["state"]
        if state not in ("uploading", "done", "failed"):
            event(log, "invalid_frame", logging.WARNING, channel=UPLOADER,
                  job_id=text(msg["job_id"], 130), error=f"unknown job state {state!r}")
            return
        if entry is None or entry.masks is None:
            return  # a job this broker has forgotten
        if entry.state in FINAL_STATES and not is_redelivery(entry, state):
            return  # a repeat
        first_delivery = state == "done" and not is_redelivery(entry, state)
        reason, detail = text(msg.get("reason"), MAX_REASON), text(msg.get("detail"), MAX_DETAIL)
        self._commit({"op": "upstate", "job_id": entry.job_id, "state": state,
                      "reason": reason, "detail": detail, "t": now})
        if first_delivery and entry.submitted_at is not None:
            self.timings.observe("end_to_end", now - entry.submitted_at)
        if state in FINAL_STATES:
            self.sent_at.pop(entry.job_id, None)
            level = logging.INFO if state == "done" else logging.WARNING
            event(log, f"job_{state}", level, job_id=entry.job_id, reason=reason, detail=detail)

    def _resend_due(self, now: float) -> None:
        """Drop a silent uploader; re-send deliveries unacknowledged for too long."""
        if self.uploader is not None and \
                self.uploader.last_seen < now - self.broker_cfg.peer_expiry_s:
            event(log, "uploader_lost", logging.WARNING, pending=len(self.book.pending))
            self.uploader = None
        if self.uploader is not None:
            for job_id in self.book.pending:
                if self.sent_at.get(job_id, float("-inf")) + DELIVERY_RESEND_S <= now:
                    self._deliver(self.book.jobs[job_id], now)
