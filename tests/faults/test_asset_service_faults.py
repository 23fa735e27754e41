"""The Mask Asset Service misbehaving, and the uploader dying with work in its spool.

Every test ends with the ledger's accounting: each accepted job delivered exactly
once (or dead-lettered with its reason), and /stats agreeing with the receiver.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from tests.support import procs
from tests.support.ledger import JobLedger
from tests.support.observe import log_events, spooled
from tests.support.procs import wait_for
from tests.support.receiver import Receiver
from tests.support.service import SECRET, ServiceTree, person_photo
from tests.support.trees import config_file


def uploader_events(tree: ServiceTree, name: str, job_id: str | None = None) -> list[dict]:
    """The uploader's log events ``name`` about ``job_id``."""
    return log_events(tree.logs / "uploader.log", name, job_id)


def submit_with_receiver_down(tree: ServiceTree, prefix: str, count: int
                              ) -> tuple[JobLedger, list[str]]:
    """Take the asset service down, then submit ``count`` photos (all must get 202)."""
    tree.receiver.set_down(True)
    book = JobLedger(tree)
    photo = person_photo()
    job_ids = [f"{prefix}-{i}" for i in range(count)]
    for job_id in job_ids:
        resp = book.post(job_id, photo)
        assert resp is not None, f"no answer to {job_id}"
        assert resp.status_code == 202
    return book, job_ids


def test_uploader_sigkill_with_jobs_spooled(make_tree):
    # Retries in real seconds: the jobs stay in the spool (not dead-lettered) while the
    # asset service is down.
    tree = make_tree(workers=1, UPLOAD_BACKOFF_BASE_S="1.0")
    book, job_ids = submit_with_receiver_down(tree, "spooled", 4)
    state = Path(tree.env["STATE_DIR"])
    wait_for(lambda: spooled(state) == set(job_ids), 60, what="every job in the spool")
    wait_for(lambda: all(uploader_events(tree, "upload_retry", j) for j in job_ids), 30,
             what="a failed attempt for every job")

    tree.kill("uploader")  # SIGKILL in the middle of its retry waits
    tree.receiver.set_down(False)
    tree.start("uploader")
    tally = book.settle(timeout=60)
    assert tally.delivered == 4 and not tally.failed
    assert spooled(state) == set()
    assert tree.stats()["handed_off"] == 4


def test_asset_service_down_then_up(make_tree):
    tree = make_tree(workers=1, UPLOAD_BACKOFF_BASE_S="0.5")  # gives up after ~15 s
    book, job_ids = submit_with_receiver_down(tree, "down", 3)
    wait_for(lambda: all(uploader_events(tree, "upload_retry", j) for j in job_ids), 30,
             what="a refused connection for every job")
    assert not tree.receiver.uploads
    tree.receiver.set_down(False)
    tally = book.settle(timeout=60)
    assert tally.delivered == 3 and not tally.failed
    assert tree.stats()["dead_lettered"] == 0


def test_broker_sigkill_while_jobs_wait_for_the_asset_service(make_tree):
    # The jobs are handed off (in the uploader's spool) when the broker dies; the
    # uploader's final states must reach the restarted broker.
    tree = make_tree(workers=1, UPLOAD_BACKOFF_BASE_S="0.5")
    book, job_ids = submit_with_receiver_down(tree, "handed", 3)
    state = Path(tree.env["STATE_DIR"])
    wait_for(lambda: spooled(state) == set(job_ids), 60, what="every job in the spool")
    assert {tree.job(j)["state"] for j in job_ids} == {"uploading"}

    tree.kill("broker")
    tree.receiver.set_down(False)
    tree.wait_delivered(job_ids, timeout=60)  # delivered while the broker is down
    tree.start("broker")
    tally = book.settle(timeout=60)
    assert tally.delivered == 3 and not tally.failed


def test_asset_service_answering_500s(make_tree):
    tree = make_tree(workers=1)  # UPLOAD_BACKOFF_BASE_S=0.02: six attempts in about 0.6 s
    book = JobLedger(tree)
    photo = person_photo()
    tree.receiver.script([500, 502, 503])
    assert book.post("err-recovers", photo).status_code == 202
    tree.wait_delivered(["err-recovers"])
    assert [u["status"] for u in tree.receiver.uploads] == [500, 502, 503, 200]

    tree.receiver.script([500] * 6)  # more than the retries: dead-lettered
    assert book.post("err-gives-up", photo).status_code == 202
    record = tree.wait_state("err-gives-up", ("failed",))
    assert record["reason"] == "upload_retries_exhausted"
    assert "6 attempts; last: HTTP 500" in record["detail"]
    wait_for(lambda: tree.stats()["dead_lettered"] == 1, 10, what="the dead letter counted")

    # The service is healthy again: redrive delivers the dead letter, and the broker
    # records the job as done.
    redrive = subprocess.run([sys.executable, "-m", "uploader", "redrive", "err-gives-up"],
                             cwd=procs.ROOT, env={**os.environ, **tree.env},
                             capture_output=True, text=True, timeout=60)
    assert redrive.returncode == 0, redrive.stdout + redrive.stderr
    assert "err-gives-up: delivered" in redrive.stdout
    tree.wait_state("err-gives-up", ("done",), timeout=30)
    tally = book.settle(timeout=30)
    assert tally.delivered == 2 and not tally.failed


def test_asset_service_answering_429_with_retry_after(make_tree):
    tree = make_tree(workers=1)
    book = JobLedger(tree)
    tree.receiver.script([(429, 30), (429, "Wed, 21 Oct 2015 07:28:00 GMT")])
    assert book.post("busy-429", person_photo()).status_code == 202
    tally = book.settle(timeout=60)
    assert tally.delivered == 1
    assert [u["status"] for u in tree.receiver.uploads] == [429, 429, 200]
    retries = uploader_events(tree, "upload_retry", "busy-429")
    # Retry-After: 30 is honoured in the test's time unit (0.02 s): a wait of at least
    # 30 units, far above the backoff's 1 unit; a date in the past means no extra wait.
    unit = float(tree.env["UPLOAD_BACKOFF_BASE_S"])
    assert [r["status"] for r in retries] == [429, 429]
    assert retries[0]["wait_s"] >= 30 * unit
    assert retries[1]["wait_s"] < 30 * unit


def test_asset_service_hanging(make_tree, tmp_path):
    cfg = config_file(tmp_path, "upload:\n  read_timeout_s: 1\n")
    tree = make_tree(workers=1, receiver=Receiver(SECRET, hang_s=2.5), SCHP_CONFIG_PATH=cfg)
    book = JobLedger(tree)
    tree.receiver.script(["hang"])
    assert book.post("hangs-once", person_photo()).status_code == 202
    tally = book.settle(timeout=60)
    assert tally.delivered == 1
    [timeout] = uploader_events(tree, "upload_retry", "hangs-once")
    assert timeout["status"] is None and "timed out" in timeout["error"].lower()
    # Once the hung request's time is up, it still counts as abandoned, not delivered.
    hung = tree.receiver.uploads[0]
    wait_for(lambda: time.monotonic() > hung["received_mono"] + 3.0, 10,
             what="the hung request's time to pass")
    assert [u["status"] for u in tree.receiver.uploads] == ["hang", 200]
    assert tree.receiver.delivered_job_ids() == ["hangs-once"]
