"""The broker core's figures behind /metrics, and the no-worker refusal rule."""

from broker.jobs import JobBook
from common import wire
from tests.broker.fakes import MASKS, Harness


def _result_with_stages(h: Harness, name: str, job_id: str, stages: dict) -> None:
    frame = wire.encode("result", job_id=job_id, attempt=0, masks=MASKS, engine="parser",
                        timings={"decode_ms": 1.0, "process_ms": 2.0, "stages_ms": stages})
    h.core.handle_worker(name.encode(), frame, h.now)


def test_jobs_are_refused_only_after_no_worker_was_alive_for_the_grace_period():
    h = Harness(no_worker_grace_s=60.0)
    assert h.at(1059.0).submit("j0")["outcome"] == "accepted"   # the broker just started
    refused = h.at(1061.0).submit("j1")
    assert refused["outcome"] == "no_worker" and "61 s" in refused["error"]
    assert h.query("j1") is None and h.stats()["no_worker_s"] == 61
    h.worker("w1")
    assert h.stats()["no_worker_s"] == 0
    assert h.submit("j2")["outcome"] == "accepted"
    # the worker goes silent and is dropped: a restart within the grace refuses nothing
    h.at(1070.0).core.tick(h.now)
    assert h.stats()["workers"] == 0
    assert h.at(1120.0).submit("j3")["outcome"] == "accepted"
    assert h.at(1122.0).submit("j4")["outcome"] == "no_worker"
    # a duplicate is still recognised, never refused
    assert h.submit("j0")["outcome"] == "duplicate"


def test_failures_are_counted_by_reason_and_survive_a_snapshot():
    h = Harness()
    h.worker("w1")
    for job_id, reason in (("j0", "no_person"), ("j1", "no_person"), ("j2", "bad_image")):
        h.submit(job_id)
        h.failed("w1", job_id, reason, retryable=False)
        h.worker("w1")
    stats = h.stats()
    assert stats["failed"] == 3 and stats["failed_by_reason"] == {"no_person": 2, "bad_image": 1}
    restored = JobBook(remember_finished=100)
    restored.apply(h.book.snapshot())
    assert restored.counters.failed_by_reason == {"no_person": 2, "bad_image": 1}


def test_a_redrive_moves_failed_to_done_but_never_lowers_failed_by_reason():
    h = Harness()
    h.uploader("ready", counters={})
    h.submit("j0")
    h.worker("w1")
    h.result("w1", "j0")
    h.uploader("state", job_id="j0", state="failed", reason="upload_retries_exhausted",
               detail=None)
    h.uploader("state", job_id="j0", state="done", reason=None, detail=None)   # redriven
    stats = h.stats()
    assert (stats["failed"], stats["jobs_processed"], stats["redelivered"]) == (0, 1, 1)
    assert stats["failed_by_reason"] == {"upload_retries_exhausted": 1}
    assert "end_to_end" not in stats["timings"]   # a redelivery is not a first delivery


def test_stage_queue_and_end_to_end_times_are_kept():
    h = Harness()
    h.uploader("ready", counters={})
    h.at(1000.0).submit("j0")
    h.at(1002.0).worker("w1")                      # waited 2 s in the queue
    _result_with_stages(h.at(1003.0), "w1", "j0",
                        {"decode": 4.0, "forward": 700.0, "encode": 3.0, "bogus": 1.0,
                         "refine": "x"})
    h.uploader("ack", job_id="j0")
    h.at(1004.5).uploader("state", job_id="j0", state="done", reason=None, detail=None)
    timings = h.stats()["timings"]
    assert set(timings) == {"queue_wait", "end_to_end", "stage_decode", "stage_forward",
                            "stage_encode"}
    assert timings["queue_wait"]["count"] == 1 and timings["queue_wait"]["sum"] == 2.0
    assert timings["end_to_end"]["sum"] == 4.5
    forward = timings["stage_forward"]
    assert forward["sum"] == 0.7 and forward["counts"][forward["le"].index(1.0)] == 1
    assert forward["counts"][forward["le"].index(0.5)] == 0


def test_uploader_figures_are_kept_only_when_well_formed():
    h = Harness()
    upload = {"le": [0.1, 1.0], "counts": [1, 3], "sum": 1.5, "count": 4}
    h.uploader("ready", counters={})
    h.uploader("heartbeat", counters={"delivered": 2, "attempts_2xx": 2, "attempts_5xx": 1,
                                      "attempts_weird": 9, "retried": -1},
               timings={"upload": upload, "other": upload}, spool={"depth": 3, "dead": 1})
    stats = h.stats()
    assert stats["upload_attempts"] == {"2xx": 2, "5xx": 1}
    assert stats["upload_retried"] == 0   # a negative count is dropped
    assert stats["timings"]["upload"] == upload and "other" not in stats["timings"]
    assert (stats["spool_depth"], stats["dead_letters_held"]) == (3, 1)
    h.uploader("heartbeat", counters={}, timings={"upload": {**upload, "counts": [3, 1]}})
    assert "upload" not in h.stats()["timings"]   # counts must be cumulative


def test_worker_precision_and_backend_reach_per_worker():
    h = Harness()
    h.worker("w1", engine="schp", precision="bf16", backend="compiled")
    w1 = h.stats()["per_worker"]["w1"]
    assert (w1["engine"], w1["precision"], w1["backend"]) == ("schp", "bf16", "compiled")
