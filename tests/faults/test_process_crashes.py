"""Processes dying under load: workers and the broker, SIGKILLed mid-job and restarted.

The workers run the SCHP engine on a random-weight checkpoint: a forward pass
takes about a second, so a worker can be caught in the middle of one (the job
record says ``processing`` and names the worker) and frozen there with SIGSTOP
before it is killed: "mid-forward" is then a checked fact, not a race.
"""

from __future__ import annotations

import os
import signal
import time

from tests.faults.kit import schp_env
from tests.support.ledger import JobLedger
from tests.support.observe import log_events, mid_job
from tests.support.procs import wait_for
from tests.support.service import ServiceTree, person_photo
from tests.support.trees import config_file, worker_process

#: Seconds a frozen worker's last message gets to reach the broker before the check.
FREEZE_SETTLE_S = 0.2


def running(tree: ServiceTree, job_ids: list[str], count: int) -> list[dict]:
    """Wait until ``count`` of ``job_ids`` are being processed; their records."""
    found: list[dict] = []

    def enough() -> bool:
        found[:] = [r for r in map(tree.job, job_ids)
                    if r.get("state") == "processing" and r.get("worker")]
        return len(found) >= count

    wait_for(enough, 90, interval=0.05, what=f"{count} jobs processing")
    return found


def post_jobs(book: JobLedger, photo: bytes, prefix: str, count: int = 3) -> list[str]:
    """Post ``count`` jobs ``<prefix>-0``, ``<prefix>-1``, ...; each must be accepted."""
    job_ids = [f"{prefix}-{i}" for i in range(count)]
    for job_id in job_ids:
        resp = book.post(job_id, photo)
        assert resp is not None, f"no answer to {job_id}"
        assert resp.status_code == 202
    return job_ids


def freeze_mid_job(tree: ServiceTree, job_ids: list[str], skip: tuple[str, ...] = (),
                   ) -> tuple[dict, str]:
    """Find a worker in the middle of one of ``job_ids`` and SIGSTOP it there.

    Returns the job's record and the worker's process name. The freeze makes
    "mid-job" a fact rather than a race: after the stop, the worker's log has no
    ``job_done`` and the broker still shows the job processing on it (if the job
    ended just before the stop, the worker is resumed and the next one is tried).
    The caller must act (kill, or SIGCONT) within the peer expiry (1.25 s here).
    """
    for _ in range(20):
        candidates = [r for r in running(tree, job_ids, 1) if r["worker"] not in skip]
        if not candidates:
            continue
        record = candidates[0]
        name = worker_process(tree, record["worker"])
        proc = tree.procs[name]
        os.killpg(proc.pid, signal.SIGSTOP)
        # a result sent just before the stop has this long to reach the broker
        time.sleep(FREEZE_SETTLE_S)
        now = tree.job(record["job_id"])
        if (now.get("state") == "processing" and now.get("worker") == record["worker"]
                and mid_job(tree.log_path(name), record["job_id"])):
            return record, name
        os.killpg(proc.pid, signal.SIGCONT)
    raise AssertionError("no worker could be caught in the middle of a job")


def test_sigkill_a_worker_mid_forward(make_tree, schp_weights):
    tree = make_tree(workers=2, **schp_env(schp_weights))
    book = JobLedger(tree)
    job_ids = post_jobs(book, person_photo(), "kill-one")
    victim, name = freeze_mid_job(tree, job_ids)
    tree.kill(name)  # SIGKILL, mid-forward

    tally = book.settle(timeout=120)
    assert tally.delivered == 3
    # it was killed inside the job: started, never finished
    assert mid_job(tree.log_path(name), victim["job_id"])
    redone = tree.job(victim["job_id"])
    assert redone["attempts"] == 2 and redone["worker"] != victim["worker"]
    requeued = log_events(tree.logs / "broker.log", "job_requeued", victim["job_id"])
    assert [e["reason"] for e in requeued] == ["worker_lost"]


def test_sigkill_every_worker_then_start_them_again(make_tree, schp_weights):
    tree = make_tree(workers=2, **schp_env(schp_weights))
    book = JobLedger(tree)
    job_ids = post_jobs(book, person_photo(), "kill-all")
    first, name0 = freeze_mid_job(tree, job_ids)
    second, name1 = freeze_mid_job(tree, job_ids, skip=(first["worker"],))
    victims = [first, second]
    tree.kill(name0)
    tree.kill(name1)
    wait_for(lambda: tree.health().get("detail") == "no segmentation worker is alive", 30,
             what="the broker to notice that every worker died")
    assert tree.stats()["queue_current"] == 3  # both jobs back in the queue, none lost

    tree.start_worker(0)
    tree.start_worker(1)
    tally = book.settle(timeout=150)
    assert tally.delivered == 3
    for record in victims:
        assert tree.job(record["job_id"])["attempts"] == 2


def test_broker_sigkill_then_sigterm_with_jobs_queued_and_in_flight(make_tree, schp_weights,
                                                                     tmp_path):
    # A short broker timeout so the POST made while the broker is down is answered quickly.
    cfg = config_file(tmp_path, "server:\n  broker_timeout_s: 1.0\n")
    tree = make_tree(workers=1, SCHP_CONFIG_PATH=cfg, **schp_env(schp_weights))
    book = JobLedger(tree)
    photo = person_photo()
    job_ids = post_jobs(book, photo, "broker")
    crashed, worker = freeze_mid_job(tree, job_ids)
    assert tree.stats()["queue_current"] == 2
    tree.kill("broker")  # crash: one job in flight, two queued
    os.killpg(tree.procs[worker].pid, signal.SIGCONT)
    outage = book.post("broker-during-outage", photo)
    assert outage is not None and outage.status_code == 503
    assert outage.headers.get("Retry-After") and "error" in outage.json()
    tree.start("broker")
    assert book.submit("broker-during-outage", photo).status_code in (200, 202)
    job_ids.append("broker-during-outage")

    stopped, worker = freeze_mid_job(tree, job_ids)
    assert tree.stats()["queue_current"] >= 1
    tree.stop("broker")  # clean stop (SIGTERM): in-flight work replayed at the next start
    os.killpg(tree.procs[worker].pid, signal.SIGCONT)
    tree.start("broker")

    tally = book.settle(timeout=150)
    assert tally.delivered == 4
    replays = log_events(tree.logs / "broker.log", "journal_replayed")
    assert len(replays) == 3  # the first start, and one after each stop
    # the job in flight at each stop went back to the head of the queue
    assert replays[1]["recovered_in_flight"] == [crashed["job_id"]]
    assert replays[2]["recovered_in_flight"] == [stopped["job_id"]]


def test_broker_frozen_while_a_job_is_submitted(make_tree, tmp_path):
    # SIGSTOP: the broker receives the submit but cannot answer in time. The client is
    # told 503 (outcome unknown); the broker accepts the job once it runs again, and a
    # retry with the same job_id learns that it is known. It is processed once.
    cfg = config_file(tmp_path, "server:\n  broker_timeout_s: 1.0\n")
    tree = make_tree(workers=1, SCHP_CONFIG_PATH=cfg)
    book = JobLedger(tree)
    photo = person_photo()
    broker = tree.procs["broker"]
    os.killpg(broker.pid, signal.SIGSTOP)
    try:
        answer = book.post("frozen-broker", photo)
    finally:
        os.killpg(broker.pid, signal.SIGCONT)
    assert answer is not None and answer.status_code == 503
    assert answer.json()["error"].startswith("the job queue is unavailable")
    retry = book.submit("frozen-broker", photo)  # the late submit was first in line
    assert retry.status_code == 200 and retry.json()["queued"] is False
    assert book.accepted == {"frozen-broker": "200-after-retry"}
    tally = book.settle(timeout=60)
    assert tally.delivered == 1
    assert not list((tree.root / "tmp" / "incoming").iterdir())  # no photo left behind
