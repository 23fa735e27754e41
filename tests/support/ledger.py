"""Counting every job a fault test submits, and checking where each one ended.

A :class:`JobLedger` posts photos to a running service and records every job
the service *accepted*: answered 202, or answered 200 "already known" after an
earlier attempt of ours with the same ``job_id`` went unanswered (a 503, a cut
connection): that attempt was accepted without our hearing it, which is the
retry contract of docs/api.md.

:meth:`JobLedger.settle` waits until every accepted job is final, then checks
the promise the service makes under faults:

- a ``done`` job was delivered to the receiver exactly once;
- a ``failed`` job has a reason and was never delivered (one the uploader gave
  up on is in ``STATE_DIR/uploader/dead/``);
- nothing reached the receiver that the service did not accept;
- ``/stats`` agrees: ``jobs_processed`` equals the distinct delivered jobs,
  ``failed`` the failed ones, ``accepted`` the ledger, and nothing is queued.

The service object only needs ``url``, ``env`` (with ``STATE_DIR``),
``receiver``, ``job(job_id)`` and ``stats()``: a
:class:`tests.support.service.ServiceTree` or a supervisord-run service.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import requests

from common.wire import FINAL_STATES
from tests.support.receiver import Receiver

#: Figures summed over every ledger settled in this test session (for the summary line).
TOTALS: Counter = Counter()


class Service(Protocol):
    # Read-only: the harnesses derive it from their port.
    @property
    def url(self) -> str: ...

    env: dict[str, str]
    receiver: Receiver

    def job(self, job_id: str) -> dict: ...
    def stats(self) -> dict: ...


@dataclass
class Tally:
    """Where the accepted jobs ended (``lost`` is always 0 after a passing settle)."""

    accepted: int
    delivered: int
    failed: dict[str, str] = field(default_factory=dict)   #: job_id -> reason
    dead_lettered: int = 0
    lost: int = 0


class JobLedger:
    """Submits jobs to ``service`` and accounts for each one (see the module docstring)."""

    def __init__(self, service: Service, user_id: str = "fault-user") -> None:
        self.service = service
        self.user_id = user_id
        self.accepted: dict[str, str] = {}      #: job_id -> "202" or "200-after-retry"
        self.answers: Counter = Counter()       #: HTTP status (or "no-answer") -> count
        self._unanswered: set[str] = set()      #: job ids with an attempt of unknown outcome
        self._lock = threading.Lock()

    def post(self, job_id: str, photo: bytes, timeout: float = 30.0) -> requests.Response | None:
        """One POST /process; records the answer. None when no answer came at all."""
        files = {"user_image": ("photo.jpg", photo, "image/jpeg")}
        data = {"job_id": job_id, "user_id": self.user_id, "provider": "qwen"}
        try:
            resp = requests.post(self.service.url + "/process", files=files, data=data,
                                 timeout=timeout)
        except requests.RequestException:
            self._record(job_id, None)
            return None
        self._record(job_id, resp)
        return resp

    def submit(self, job_id: str, photo: bytes, retry_for: float = 60.0) -> requests.Response:
        """POST until the job is accepted or known, retrying the SAME ``job_id`` after a
        503 or a cut connection (as a client should) for up to ``retry_for`` seconds.
        Any other answer ends it; the last response is returned."""
        deadline = time.monotonic() + retry_for
        while True:
            resp = self.post(job_id, photo)
            if resp is not None and resp.status_code != 503:
                return resp
            if time.monotonic() > deadline:
                last = resp.status_code if resp is not None else "no answer"
                raise AssertionError(f"job {job_id} still not accepted after {retry_for}s "
                                     f"(last: {last})")
            time.sleep(0.2)

    def _record(self, job_id: str, resp: requests.Response | None) -> None:
        with self._lock:
            status = "no-answer" if resp is None else resp.status_code
            self.answers[status] += 1
            if resp is None or status in (502, 503, 504):
                self._unanswered.add(job_id)
            elif status == 202:
                self.accepted[job_id] = "202"
            elif status == 200 and job_id in self._unanswered and job_id not in self.accepted:
                self.accepted[job_id] = "200-after-retry"

    # -- the final accounting ---------------------------------------------------------
    def settle(self, timeout: float = 120.0) -> Tally:
        """Wait until every accepted job is final, then check it (see module docstring)."""
        records = self._wait_final(timeout)
        delivered = Counter(self.service.receiver.delivered_job_ids())
        tally = Tally(accepted=len(records), delivered=0)
        problems = []
        for job_id, record in records.items():
            times = delivered[job_id]
            if record["state"] == "done":
                tally.delivered += 1
                if times != 1:
                    problems.append(f"{job_id}: done but delivered {times} times")
            else:
                tally.failed[job_id] = record.get("reason") or ""
                if not record.get("reason"):
                    problems.append(f"{job_id}: failed without a reason")
                if times:
                    problems.append(f"{job_id}: failed ({record.get('reason')}) but delivered")
                if str(record.get("reason")).startswith("upload_"):
                    tally.dead_lettered += 1
                    if not (self._state_dir / "uploader" / "dead" / job_id).is_dir():
                        problems.append(f"{job_id}: {record.get('reason')} but no dead letter")
        strangers = sorted(set(delivered) - set(records))
        if strangers:
            problems.append(f"delivered but never accepted: {strangers[:10]}")
        assert not problems, "; ".join(problems[:20])
        self._check_stats(tally, len(delivered))
        TOTALS.update(accepted=tally.accepted, delivered=tally.delivered,
                      dead_lettered=tally.dead_lettered,
                      failed_other=len(tally.failed) - tally.dead_lettered, lost=tally.lost)
        return tally

    @property
    def _state_dir(self) -> Path:
        return Path(self.service.env["STATE_DIR"])

    def _wait_final(self, timeout: float) -> dict[str, dict[str, Any]]:
        records: dict[str, dict[str, Any]] = {}
        deadline = time.monotonic() + timeout
        while True:
            for job_id in self.accepted:
                if records.get(job_id, {}).get("state") not in FINAL_STATES:
                    records[job_id] = self._job(job_id)
            open_jobs = {j: r.get("state") for j, r in records.items()
                         if r.get("state") not in FINAL_STATES}
            if not open_jobs:
                return records
            if time.monotonic() > deadline:
                shown = dict(list(open_jobs.items())[:10])
                raise AssertionError(f"{len(open_jobs)} accepted jobs not final after "
                                     f"{timeout}s (lost?): {shown}")
            time.sleep(0.25)

    def _job(self, job_id: str) -> dict[str, Any]:
        try:
            return self.service.job(job_id)
        except (requests.RequestException, ValueError):
            return {}

    def _check_stats(self, tally: Tally, distinct_delivered: int) -> None:
        stats = self.service.stats()
        figures = {k: stats.get(k) for k in ("jobs_processed", "failed", "accepted",
                                              "queue_current", "in_flight")}
        want = {"jobs_processed": distinct_delivered, "failed": len(tally.failed),
                "accepted": tally.accepted, "queue_current": 0, "in_flight": 0}
        assert tally.delivered == distinct_delivered
        assert figures == want, f"/stats {figures} disagrees with the receiver/ledger {want}"
