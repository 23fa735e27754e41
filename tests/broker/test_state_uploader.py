"""The broker core on its own: hand-off to the uploader, job states, counters, forgetting."""

from tests.broker.fakes import ROOT, Harness, delivered


def _stored(h: Harness, job_id: str = "j0") -> None:
    h.submit(job_id)
    h.worker("w1")
    h.result("w1", job_id)


def test_result_is_stored_then_delivered_to_a_connected_uploader():
    h = Harness()
    h.uploader("ready", counters={})
    h.submit("j0")
    h.worker("w1")
    outs = h.result("w1", "j0")
    assert delivered(outs) == ["j0"]
    assert h.storage.stored["j0"].keys() == {"upper_body_mask", "lower_body_mask"}
    assert h.storage.deleted == [f"{ROOT}/j0.jpg"]   # the photo is no longer needed
    assert h.query("j0")["state"] == "uploading"
    assert [r["op"] for r in h.journal.records] == ["accept", "dispatch", "stored"]


def test_pending_deliveries_wait_for_the_uploader_and_are_resent_until_acked():
    h = Harness()
    _stored(h)
    assert h.stats()["pending_handoff"] == 1
    assert delivered(h.uploader("ready", counters={"delivered": 3})) == ["j0"]
    assert delivered(h.at(1005.0).core.tick(h.now)) == []
    h.uploader("heartbeat", counters={})
    assert delivered(h.at(1010.0).core.tick(h.now)) == ["j0"]    # 10 s without an ack
    h.uploader("ack", job_id="j0")
    h.uploader("heartbeat", counters={})
    assert delivered(h.at(1030.0).core.tick(h.now)) == []
    assert h.stats()["handed_off"] == 1 and h.stats()["pending_handoff"] == 0


def test_a_new_uploader_connection_gets_every_unacked_delivery():
    h = Harness()
    h.uploader("ready", peer=b"up1", counters={})
    _stored(h, "j0")
    _stored(h, "j1")
    h.uploader("ack", job_id="j0")
    assert delivered(h.uploader("heartbeat", peer=b"up2", counters={})) == ["j1"]


def test_uploader_states_update_the_record_and_counters():
    h = Harness()
    h.uploader("ready", counters={})
    _stored(h, "j0")
    _stored(h, "j1")
    for job_id in ("j0", "j1"):
        h.uploader("ack", job_id=job_id)
    h.uploader("state", job_id="j0", state="done", reason=None, detail=None)
    h.uploader("state", job_id="j1", state="failed", reason="upload_rejected", detail="HTTP 400")
    h.uploader("state", job_id="j0", state="failed", reason="late", detail=None)  # done is final
    h.uploader("heartbeat", counters={"delivered": 1, "retried": 4, "dead_lettered": 1})
    assert h.query("j0")["state"] == "done"
    assert (h.query("j1")["state"], h.query("j1")["reason"]) == ("failed", "upload_rejected")
    stats = h.stats()
    assert (stats["jobs_processed"], stats["delivered"], stats["failed"]) == (1, 1, 1)
    assert (stats["upload_retried"], stats["dead_lettered"]) == (4, 1)
    assert stats["uploader_alive"] is True


def test_a_redriven_dead_letter_goes_from_failed_to_done():
    h = Harness()
    h.uploader("ready", counters={})
    _stored(h, "j1")
    h.uploader("ack", job_id="j1")
    h.uploader("state", job_id="j1", state="failed", reason="upload_retries_exhausted",
               detail="6 attempts")
    assert (h.stats()["jobs_processed"], h.stats()["failed"]) == (0, 1)
    h.uploader("state", job_id="j1", state="done", reason=None, detail=None)  # redrive
    h.uploader("state", job_id="j1", state="done", reason=None, detail=None)  # a repeat
    record = h.query("j1")
    assert (record["state"], record["reason"]) == ("done", None)
    stats = h.stats()
    assert (stats["jobs_processed"], stats["delivered"], stats["failed"]) == (1, 1, 0)
    h.uploader("state", job_id="j1", state="failed", reason="stale", detail=None)
    assert h.query("j1")["state"] == "done"


def test_silent_uploader_is_dropped_and_deliveries_wait():
    h = Harness()
    h.uploader("ready", counters={})
    h.at(1006.0).core.tick(h.now)
    assert h.stats()["uploader_alive"] is False
    _stored(h)
    assert h.stats()["pending_handoff"] == 1


def test_only_the_last_remember_finished_jobs_are_kept():
    h = Harness(remember_finished=2)
    for i in range(3):
        h.submit(f"j{i}")
        h.worker("w1")
        h.failed("w1", f"j{i}", "no_person", retryable=False)
    assert h.query("j0") is None and h.query("j2")["state"] == "failed"
    assert h.submit("j0")["outcome"] == "accepted"   # forgotten, so new again
    assert h.submit("j1")["outcome"] == "duplicate"
