"""The real broker process, driven by test sockets acting as front end, workers and uploader."""

from __future__ import annotations

import signal
import subprocess
import threading
from pathlib import Path

import pytest
import zmq

from segworker.worker import Worker
from tests.broker.clients import FakeWorker, FrontEnd, Peer, broker_env
from tests.segworker.worker_support import FakeEngine, FakeProcess, png_photo, worker_settings
from tests.support import procs
from tests.support.observe import log_events


class Rig:
    def __init__(self, root: Path) -> None:
        self.root, self.env = root, broker_env(root)
        self.temp = Path(self.env["TEMP_FOLDER"])
        self.temp.mkdir(parents=True)
        self.log = root / "broker.log"
        self.ctx = zmq.Context()
        self.proc: subprocess.Popen | None = None
        self.peers: list[Peer] = []

    def start(self) -> FrontEnd:
        self.proc = procs.start("broker", self.env, log_path=self.log)
        front = self.front()
        front.wait_up()
        return front

    def front(self) -> FrontEnd:
        return self._keep(FrontEnd(self.ctx, self.env["BROKER_FRONTEND_ENDPOINT"]))

    def worker(self, name: str) -> FakeWorker:
        return self._keep(FakeWorker(self.ctx, self.env["BROKER_WORKER_BIND"], name))

    def uploader(self) -> Peer:
        return self._keep(Peer(self.ctx, self.env["BROKER_UPLOADER_ENDPOINT"]))

    def _keep(self, peer):
        self.peers.append(peer)
        return peer

    def close(self) -> None:
        procs.stop(self.proc)
        for peer in self.peers:
            peer.close()
        self.ctx.term()


@pytest.fixture
def rig(tmp_path):
    rig = Rig(tmp_path)
    try:
        yield rig
    finally:
        rig.close()


def test_two_workers_start_twenty_jobs_in_submission_order(rig):
    front = rig.start()
    submitted = [f"job-{i:02d}" for i in range(20)]
    for job_id in submitted[:10]:
        assert front.submit(rig.temp, job_id)["outcome"] == "accepted"
    workers = [rig.worker("w1"), rig.worker("w2")]
    for w in workers:
        w.ready()
    done, turn, more = [], 0, submitted[10:]
    while len(done) < 20:
        if len(done) >= 5 and more:   # the second half arrives while workers are busy
            assert front.submit(rig.temp, more.pop(0))["outcome"] == "accepted"
        worker = workers[turn % 2]
        turn += 1
        msg = worker.poll(0.05)
        if msg is not None and msg["type"] == "job":
            worker.result(msg["job"])
            worker.ready()
            done.append(msg["job"]["job_id"])
        else:
            worker.heartbeat(busy=False)
    started = [e["job_id"] for e in log_events(rig.log, "job_dispatched")]
    assert started == submitted
    procs.wait_for(lambda: front.stats()["in_flight"] == 0, 10, what="last result stored")
    stats = front.stats()
    assert stats["per_worker"].keys() == {"w1", "w2"} and stats["queue_current"] == 0
    assert min(s["jobs_done"] for s in stats["per_worker"].values()) >= 1
    assert sum(s["jobs_done"] for s in stats["per_worker"].values()) == 20
    assert front.record("job-07")["state"] == "uploading"
    mask = rig.temp / "jobs" / "job-07" / "upper_body_mask.png"
    assert mask.read_bytes().startswith(b"\x89PNG")


def test_silent_worker_loses_its_job_to_the_other(rig):
    front = rig.start()
    front.submit(rig.temp, "job-1")
    silent, healthy = rig.worker("silent"), rig.worker("healthy")
    silent.ready()
    first = silent.next_job(beat=False)
    healthy.ready()
    again = healthy.next_job()           # after ~0.5 s of silence, at the head, attempt + 1
    assert again["job"]["job_id"] == "job-1" and again["job"]["attempt"] == 1
    silent.result(first["job"])          # too late: stale, ignored
    healthy.result(again["job"])
    procs.wait_for(lambda: front.record("job-1")["state"] == "uploading", 10, what="result stored")
    record = front.record("job-1")
    assert (record["worker"], record["attempts"]) == ("healthy", 2)
    assert front.stats()["retried"] == 1
    assert log_events(rig.log, "stale_result")


def test_sigkill_with_jobs_queued_and_in_flight_loses_nothing(rig):
    front = rig.start()
    ids = [f"job-{i}" for i in range(6)]
    for job_id in ids:
        front.submit(rig.temp, job_id)
    w1, w2 = rig.worker("w1"), rig.worker("w2")
    w1.ready()
    w1.result(w1.next_job()["job"])                    # job-0 stored, no uploader yet
    w1.ready()
    assert w1.next_job()["job"]["job_id"] == "job-1"   # in flight
    w2.ready()
    assert w2.next_job()["job"]["job_id"] == "job-2"   # in flight
    procs.kill(rig.proc)

    front = rig.start()
    stats = front.stats()
    assert (stats["queue_current"], stats["in_flight"], stats["pending_handoff"]) == (5, 0, 1)
    uploader = rig.uploader()
    uploader.send("ready", counters={})
    deliver = uploader.recv()
    assert deliver["type"] == "deliver" and deliver["job"]["job_id"] == "job-0"
    assert Path(deliver["masks"]["upper_body_mask"]).read_bytes().startswith(b"\x89PNG")
    uploader.send("ack", job_id="job-0")
    w3 = rig.worker("w3")
    w3.ready()
    order = []
    for _ in range(5):
        job = w3.next_job()["job"]
        order.append(job["job_id"])
        w3.result(job)
        w3.ready()
    assert order == ids[1:]
    uploader.send("state", job_id="job-0", state="done", reason=None, detail=None)
    procs.wait_for(lambda: front.stats()["jobs_processed"] == 1, 10, what="job-0 done")
    assert front.stats()["accepted"] == 6


def test_sigterm_exits_zero_and_keeps_jobs(rig):
    front = rig.start()
    front.submit(rig.temp, "job-1")
    procs.stop(rig.proc, signal.SIGTERM)
    assert rig.proc.returncode == 0
    assert log_events(rig.log, "broker_stopping")
    front = rig.start()
    assert front.record("job-1")["state"] == "queued"
    assert front.submit(rig.temp, "job-1")["outcome"] == "duplicate"


def test_garbage_on_every_socket_does_not_hurt(rig):
    front = rig.start()
    worker, uploader = rig.worker("w"), rig.uploader()
    for peer in (front, worker, uploader):
        peer.sock.send(b"\xc1\x00garbage")
        peer.sock.send_multipart([b"two", b"frames"])
        peer.sock.send(b'\x82\xa1v\x63\xa4type\xa5ready')   # wrong schema version
    procs.wait_for(lambda: len(log_events(rig.log, "invalid_frame")) == 9, 10,
                   what="nine invalid frames logged")
    assert front.stats()["workers"] == 0 and rig.proc.poll() is None
    assert front.submit(rig.temp, "ok-1")["outcome"] == "accepted"


def test_a_real_worker_keeps_serving_across_a_broker_crash(rig):
    front = rig.start()
    worker = Worker(worker_settings(rig.env["BROKER_WORKER_BIND"]), FakeEngine(), FakeProcess(),
                    ctx=rig.ctx, drain_s=2.0)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        front.submit(rig.temp, "before", png_photo())
        procs.wait_for(lambda: front.record("before")["state"] == "uploading", 20,
                       what="the first job's result")
        procs.kill(rig.proc)
        front = rig.start()
        # The worker never noticed (its socket reconnected); its idle heartbeat is enough.
        front.submit(rig.temp, "after", png_photo())
        procs.wait_for(lambda: front.record("after")["state"] == "uploading", 20,
                       what="the job submitted after the restart")
        assert front.record("before")["state"] == "uploading"
    finally:
        worker.request_stop()
        thread.join(10)
