"""The broker core on its own: lost workers, deadlines, retries and stale results."""

from broker.protocol import WORKERS, Out
from broker.state import STORAGE_RETRY_S
from common import wire
from tests.broker.fakes import MASKS, ROOT, Harness, dispatched


def _two_busy_workers() -> Harness:
    h = Harness()
    for i in range(3):
        h.submit(f"j{i}")
    h.worker("w1")
    h.worker("w2")
    return h


def test_silent_worker_loses_its_job_to_the_head_of_the_queue():
    h = _two_busy_workers()
    h.at(1004.0).worker("w2", "heartbeat", busy=True)
    outs = h.at(1005.5).core.tick(h.now)       # w1 silent for 5.5 s > 5 s expiry
    assert dispatched(outs) == []
    assert list(h.book.queue) == ["j0", "j2"]
    record = h.query("j0")
    assert (record["state"], record["reason"], record["worker"]) == ("queued", "worker_lost", None)
    assert h.book.jobs["j0"].job["attempt"] == 1
    stats = h.stats()
    assert stats["workers"] == 1 and stats["retried"] == 1
    # The next idle worker gets the requeued job first, with the new attempt number.
    h.result("w2", "j1")
    outs = h.worker("w3")
    assert dispatched(outs) == [(b"w3", "j0")]


def test_deadline_overrun_requeues_at_head_and_the_worker_stays_busy():
    h = _two_busy_workers()
    h.at(1020.0).worker("w1", "heartbeat", busy=True)
    h.worker("w2", "heartbeat", busy=True)
    h.at(1031.0).worker("w1", "heartbeat", busy=True)
    h.worker("w2", "heartbeat", busy=True)
    assert dispatched(h.core.tick(h.now)) == []
    assert list(h.book.queue) == ["j1", "j0", "j2"]   # both overran; each went to the head
    assert h.query("j0")["reason"] == "deadline_exceeded"
    w1 = h.stats()["per_worker"]["w1"]
    assert (w1["busy"], w1["job_id"]) == (True, None)
    assert dispatched(h.worker("w1", "heartbeat", busy=True)) == []   # still on the old job
    # The overrunning worker's late result is stale and ignored.
    h.result("w1", "j0", attempt=0)
    assert h.query("j0")["state"] == "queued" and "j0" not in h.storage.stored


def test_max_attempts_fails_the_job_attempts_exhausted_and_deletes_the_photo():
    h = Harness(max_attempts=2)
    h.submit("j0")
    h.worker("w1")
    h.failed("w1", "j0", "worker_error", retryable=True)
    assert h.query("j0")["state"] == "queued"
    h.worker("w1")
    h.failed("w1", "j0", "worker_error", retryable=True, attempt=1)
    record = h.query("j0")
    assert (record["state"], record["reason"], record["attempts"]) == \
        ("failed", "attempts_exhausted", 2)
    assert h.storage.deleted == [f"{ROOT}/j0.jpg"]
    assert h.stats()["failed"] == 1 and h.stats()["retried"] == 1


def test_final_failure_from_a_worker_keeps_its_reason():
    h = Harness()
    h.submit("j0")
    h.worker("w1")
    h.failed("w1", "j0", "no_person", retryable=False)
    record = h.query("j0")
    assert (record["state"], record["reason"], record["detail"]) == ("failed", "no_person", "d")
    assert record["finished_at"] == h.now
    assert h.stats()["per_worker"]["w1"]["jobs_failed"] == 1


def test_stale_results_are_ignored():
    h = Harness()
    h.submit("j0")
    h.worker("w1")
    h.result("w2", "j0")                           # unknown worker
    h.worker("w2", "heartbeat", busy=True)
    h.result("w2", "j0")                           # not the holder
    h.result("w1", "j0", attempt=5)                # wrong attempt
    h.result("w1", "nope")                         # unknown job
    assert h.query("j0")["state"] == "processing" and h.storage.stored == {}
    h.result("w1", "j0")
    assert h.query("j0")["state"] == "uploading"
    h.result("w1", "j0")                           # a repeat
    assert h.stats()["per_worker"]["w1"]["jobs_done"] == 1


def test_disconnect_with_a_running_job_puts_it_back_at_the_head():
    h = _two_busy_workers()
    h.core.handle_worker(b"w1", wire.encode("disconnect"), h.now)
    assert list(h.book.queue) == ["j0", "j2"] and h.stats()["workers"] == 1


def test_ready_while_holding_a_job_means_the_worker_dropped_it():
    h = Harness()
    h.submit("j0")
    h.worker("w1")
    outs = h.worker("w1")
    assert dispatched(outs) == [(b"w1", "j0")]
    assert h.book.jobs["j0"].job["attempt"] == 1 and h.book.jobs["j0"].attempts == 2


def test_worker_reconnecting_with_a_new_socket_still_delivers_its_result():
    h = Harness()
    h.submit("j0")
    h.worker("w1", peer=b"old")
    h.worker("w1", "heartbeat", peer=b"new", busy=True, job_id="j0")
    h.result("w1", "j0", peer=b"new")
    assert h.query("j0")["state"] == "uploading"


def test_undeliverable_dispatch_requeues_without_spending_an_attempt():
    h = Harness()
    h.submit("j0")
    out = next(o for o in h.worker("w1") if o.channel == WORKERS)
    assert out.job_id == "j0"
    h.core.undeliverable(out, h.now)
    assert h.query("j0")["state"] == "queued" and h.book.jobs["j0"].job["attempt"] == 0
    assert h.stats()["workers"] == 0
    # A failed heartbeat send to an unrelated peer is not a dispatch: nothing happens.
    h.core.undeliverable(Out(WORKERS, b"zz", b"", None), h.now)
    assert h.query("j0")["state"] == "queued"


def test_bad_result_and_store_failure_requeue():
    h = Harness()
    h.submit("j0")
    h.worker("w1")
    h.result("w1", "j0", masks={"upper_body_mask": MASKS["upper_body_mask"]})
    assert h.query("j0")["reason"] == "bad_result"
    h.storage.fail_store = True
    h.worker("w1")
    h.result("w1", "j0", attempt=1)
    assert (h.query("j0")["state"], h.query("j0")["reason"]) == ("queued", "store_failed")


def test_a_full_disk_pauses_dispatch_instead_of_spending_attempts():
    h = Harness(max_attempts=2)
    h.submit("j0")
    h.storage.fail_store = True
    h.worker("w1")
    h.result("w1", "j0")
    record = h.query("j0")
    assert (record["state"], record["reason"]) == ("queued", "store_failed")
    assert h.book.jobs["j0"].job["attempt"] == 0      # the disk's fault, not the job's
    assert dispatched(h.worker("w1")) == []           # paused: the idle worker waits
    h.storage.fail_store = False
    h.at(h.now + STORAGE_RETRY_S)
    assert dispatched(h.core.tick(h.now)) == [(b"w1", "j0")]
    h.result("w1", "j0")
    assert h.query("j0")["state"] == "uploading"


def test_journal_failure_after_accept_is_logged_and_the_broker_goes_on():
    h = Harness()
    h.submit("j0")
    h.journal.fail = True
    assert dispatched(h.worker("w1")) == [(b"w1", "j0")]
    assert h.query("j0")["state"] == "processing"


def test_an_unjournalled_result_keeps_the_photo_for_the_rerun_after_a_crash():
    # If the `stored` record is lost, a crash replays the job as in flight and runs it
    # again: its photo must still be there, or the rerun fails `image_missing`.
    h = Harness()
    h.submit("j0")
    h.worker("w1")
    h.journal.fail = True
    h.result("w1", "j0")
    assert h.query("j0")["state"] == "uploading"
    assert f"{ROOT}/j0.jpg" not in h.storage.deleted
    h.journal.fail = False
    h.submit("j1")
    h.worker("w1")
    h.result("w1", "j1")
    assert f"{ROOT}/j1.jpg" in h.storage.deleted
