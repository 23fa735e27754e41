"""``python -m uploader`` as a real process, between a stub broker (the real broker
core) and the real HTTP receiver: hand-off, exactly-once delivery, dead letters,
redrive, crash recovery, broker outages, and secrecy."""

from __future__ import annotations

import os
import signal
import stat
from pathlib import Path

from common.wire import unpack
from tests.support import procs
from tests.support.stub_broker import UPLOADER
from tests.uploader.conftest import BASE_S, SECRET

UPPER, LOWER, SEG = "upper_body_mask", "lower_body_mask", "seg_map"


def started(up, broker, **env):
    proc = up.start(**env)
    broker.wait(lambda: sent(broker, "ready"), 20, "uploader ready")
    return proc


def sent(broker, msg_type=None, job_id=None):
    """What the uploader sent the broker."""
    return broker.messages(UPLOADER, msg_type, job_id)


def acks(broker, job_id):
    return sent(broker, "ack", job_id)


def states(broker, job_id):
    return sent(broker, "state", job_id)


def wait_state(broker, job_id, state, timeout=15):
    """The last ``state`` message that reported ``state`` for ``job_id``."""
    broker.wait(lambda: [s for s in states(broker, job_id) if s["state"] == state], timeout,
                what=f"state {state} of {job_id}")
    return [s for s in states(broker, job_id) if s["state"] == state][-1]


def redeliver(broker, job, masks):
    """A ``deliver`` the broker's core would not send now (again, or malformed)."""
    broker.send(UPLOADER, "deliver", job=job, masks=masks)


def last_counters(broker):
    return [m for m in sent(broker) if m["type"] in ("ready", "heartbeat")][-1]["counters"]


def test_delivers_once_spools_before_ack_and_cleans_up(up, rx, broker):
    started(up, broker)
    rx.script(["hang"])                        # job-1's first attempt hangs past the timeout
    job1, masks1 = up.write_job("job-1", seg_map=True)
    job2, masks2 = up.write_job("job-2")
    broker.hand_off(job1, masks1)
    redeliver(broker, job1, masks1)            # a duplicate hand-off (e.g. a lost ack)
    broker.wait(lambda: acks(broker, "job-1"), what="ack of job-1")
    spooled = up.root / "spool" / "job-1"      # durable before the ack; upload still hanging
    assert sorted(p.name for p in spooled.iterdir()) == [
        "lower_body_mask.png", "manifest.msgpack", "seg_map.png", "upper_body_mask.png"]
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in spooled.iterdir())
    assert stat.S_IMODE(spooled.stat().st_mode) == 0o700

    broker.hand_off(job2, masks2)              # not held up by job-1's slow upload
    wait_state(broker, "job-2", "done")
    assert not [s for s in states(broker, "job-1") if s["state"] == "done"]
    wait_state(broker, "job-1", "done")

    assert sorted(rx.delivered_job_ids()) == ["job-1", "job-2"]
    job1_requests = [u for u in rx.uploads if u["job_id"] == "job-1"]
    assert [u["status"] for u in job1_requests] == ["hang", 200]
    assert {u["headers"]["Idempotency-Key"] for u in job1_requests} == {"job-1"}
    final = job1_requests[-1]
    assert final["signature_ok"] and final["auth_ok"]
    assert sorted(final["files"]) == [LOWER, SEG, UPPER]
    # only the latest state per job is kept for sending, so a short-lived
    # "attempt 2" may be overtaken by "done"; the hanging attempt 1 is always seen
    seen = states(broker, "job-1")
    assert seen[0]["state"] == "uploading" and seen[0]["detail"] == "attempt 1"
    assert seen[-1]["state"] == "done"
    assert len(acks(broker, "job-1")) == 2
    broker.wait(lambda: broker.record("job-1")["state"] == "done", what="the broker's record")

    # delivered: spool entry and temp files gone, ledger remembers
    assert not spooled.exists() and not (up.temp_folder / "jobs" / "job-1").exists()
    assert (up.root / "delivered" / "job-1").exists()
    redeliver(broker, job1, masks1)            # re-sent after delivery: acked, not re-uploaded
    broker.wait(lambda: len(acks(broker, "job-1")) == 3, what="third ack")
    broker.wait(lambda: last_counters(broker)["delivered"] == 2, what="counters")
    broker.wait(lambda: broker.stats()["upload_delivered"] == 2, what="the broker's stats")
    assert rx.delivered_job_ids().count("job-1") == 1
    counters = last_counters(broker)
    assert {k: counters[k] for k in ("delivered", "retried", "dead_lettered")} == \
        {"delivered": 2, "retried": 1, "dead_lettered": 0}
    # three HTTP attempts: the hang (no answer) and two 200s, each timed
    assert (counters["attempts_2xx"], counters["attempts_error"], counters["attempts_5xx"]) == \
        (2, 1, 0)
    beat = sent(broker, "heartbeat")[-1]
    assert beat["timings"]["upload"]["count"] == 3 and beat["spool"] == {"depth": 0, "dead": 0}
    assert up.events("deliver_duplicate", "job-1")


def test_files_and_fields_arrive_intact(up, rx, broker):
    started(up, broker)
    job, masks = up.write_job("job-7", seg_map=True)
    expected = {n: Path(p).read_bytes() for n, p in masks.items()}
    broker.hand_off(job, masks)
    wait_state(broker, "job-7", "done")
    [record] = rx.uploads
    assert record["files"] == expected
    assert (record["job_id"], record["user_id"], record["provider"]) == ("job-7", "user-1", "qwen")
    assert record["signature_ok"] and record["auth_ok"]


def test_rejected_job_is_dead_lettered_then_redrive_delivers(up, rx, broker):
    started(up, broker)
    rx.script([401])
    job, masks = up.write_job("job-1")
    broker.hand_off(job, masks)
    failed = wait_state(broker, "job-1", "failed")
    assert failed["reason"] == "upload_rejected_401" and "scripted 401" in failed["detail"]
    assert len(rx.uploads) == 1                # final at once: no retry
    dead = decode_manifest(up.root / "dead" / "job-1")
    assert dead["dead"]["status"] == 401 and "scripted 401" in dead["dead"]["body"]
    assert all(os.path.exists(p) for p in masks.values())   # nothing deleted undelivered
    broker.wait(lambda: last_counters(broker)["dead_lettered"] == 1, what="counter")

    done = up.run("redrive")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "job-1: delivered" in done.stdout
    assert rx.delivered_job_ids() == ["job-1"]
    assert not (up.root / "dead" / "job-1").exists()
    assert not any(os.path.exists(p) for p in masks.values())
    wait_state(broker, "job-1", "done")        # the running service forwards the redrive's state
    broker.wait(lambda: broker.record("job-1")["state"] == "done", what="redelivered")
    assert broker.stats()["redelivered"] == 1


def test_down_longer_than_the_retries_then_redrive(up, rx, broker):
    started(up, broker)
    rx.set_down(True)
    job, masks = up.write_job("job-1")
    broker.hand_off(job, masks)
    failed = wait_state(broker, "job-1", "failed")
    assert failed["reason"] == "upload_retries_exhausted"
    assert "6 attempts" in failed["detail"] and "ConnectionError" in failed["detail"]
    waits = [e["wait_s"] for e in up.events("upload_retry", "job-1")]
    assert len(waits) == 5
    for k, wait in enumerate(waits):           # base x 1, 2, 4, 8, 16 (+ jitter 0.25 units)
        assert BASE_S * 2 ** k <= wait <= BASE_S * (2 ** k + 0.25) + 1e-4
    manifest = decode_manifest(up.root / "dead" / "job-1")
    assert len(manifest["attempts"]) == 6 and manifest["dead"]["status"] is None

    still = up.run("redrive", "job-1", "--retries", "0")     # still down: stays dead
    assert still.returncode == 1 and "still dead-lettered" in still.stdout
    assert len(decode_manifest(up.root / "dead" / "job-1")["attempts"]) == 7
    unknown = up.run("redrive", "job-404")
    assert unknown.returncode == 1 and "job-404: not dead-lettered" in unknown.stdout

    rx.set_down(False)
    done = up.run("redrive", "job-1")
    assert done.returncode == 0 and rx.delivered_job_ids() == ["job-1"]
    assert up.run("redrive").stdout.strip() == "redrive: no dead-lettered jobs"


def test_sigkill_with_a_spooled_job_then_restart_delivers_once(up, rx, broker):
    rx.set_down(True)
    first = started(up, broker, UPLOAD_BACKOFF_BASE_S="1.0")   # long waits: still spooled
    job, masks = up.write_job("job-1")
    broker.hand_off(job, masks)
    broker.wait(lambda: up.events("upload_retry", "job-1"), what="first failed attempt")
    procs.kill(first)
    manifest = decode_manifest(up.root / "spool" / "job-1")
    assert len(manifest["attempts"]) >= 1 and manifest["dead"] is None

    rx.set_down(False)
    ready_before = len(sent(broker, "ready"))
    up.start()                                  # the broker does not hand the job over again
    broker.wait(lambda: len(sent(broker, "ready")) > ready_before, what="second ready")
    assert sent(broker, "ready")[-1]["counters"]["retried"] >= 1   # persisted
    wait_state(broker, "job-1", "done")
    assert rx.delivered_job_ids() == ["job-1"]
    assert not (up.root / "spool" / "job-1").exists()
    assert len(acks(broker, "job-1")) == 1


def test_sigterm_stops_cleanly_and_keeps_the_job_spooled(up, rx, broker):
    rx.set_down(True)
    proc = started(up, broker, UPLOAD_BACKOFF_BASE_S="1.0")  # in a long retry wait
    job, masks = up.write_job("job-1")
    broker.hand_off(job, masks)
    broker.wait(lambda: up.events("upload_retry", "job-1"), what="a retry wait")
    os.killpg(proc.pid, signal.SIGTERM)
    assert proc.wait(timeout=12) == 0           # not killed: it left on its own
    assert up.events("upload_interrupted", "job-1") and up.events("uploader_stopped")
    assert decode_manifest(up.root / "spool" / "job-1")["dead"] is None
    assert all(os.path.exists(p) for p in masks.values())


def test_a_second_uploader_on_the_same_state_dir_refuses_to_start(up, broker):
    started(up, broker)
    second = up.run(timeout=20)
    assert second.returncode == 1 and "uploader_already_running" in second.stderr


def test_a_silent_broker_gets_a_fresh_connection_and_a_new_ready(up, broker):
    started(up, broker)
    broker.pause()                              # connected, but says nothing
    broker.wait(lambda: up.events("broker_silent"), what="silence noticed")
    broker.wait(lambda: len(sent(broker, "ready")) >= 2, what="ready again")
    broker.resume()
    count = len(sent(broker, "heartbeat"))
    broker.wait(lambda: len(sent(broker, "heartbeat")) > count, what="heartbeats")
    assert broker.stats()["uploader_alive"]


def test_states_sent_while_the_broker_is_down_are_resent(up, rx, broker):
    started(up, broker)
    rx.script(["hang"])
    job, masks = up.write_job("job-1")
    broker.hand_off(job, masks)
    wait_state(broker, "job-1", "uploading")
    broker.down()
    seen_before = len(sent(broker))
    procs.wait_for(lambda: rx.delivered_job_ids() == ["job-1"], 15, what="delivery")
    broker.up()                                 # restarted: replays its journal
    wait_state(broker, "job-1", "done")
    after = sent(broker)[seen_before:]
    assert "ready" in [m["type"] for m in after]  # reconnected, and said so
    assert [m for m in after if m["type"] == "state" and m["state"] == "done"]
    assert rx.delivered_job_ids() == ["job-1"]
    broker.wait(lambda: broker.record("job-1")["state"] == "done", what="the broker's record")


def test_the_secret_stays_out_of_logs_states_and_dead_letters(up, rx, broker):
    started(up, broker, MASK_ASSET_URL=f"{rx.url}?token={SECRET}")
    rx.set_down(True)                           # errors quote the URL, token and all
    job, masks = up.write_job("job-1")
    broker.hand_off(job, masks)
    failed = wait_state(broker, "job-1", "failed")
    assert "***" in failed["detail"] and SECRET not in str(sent(broker))
    for path in up.state_dir.rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path
    assert "***" in up.log_text()               # the logs did quote it, redacted
    # (the up fixture then checks every log line of the process for the secret)


def test_invalid_deliveries_are_acked_and_failed_without_touching_disk(up, rx, broker, tmp_path):
    started(up, broker)
    outside = tmp_path / "outside.png"
    outside.write_bytes(b"not yours")
    job, masks = up.write_job("job-1")
    bad_id = dict(job, job_id="../../etc")
    redeliver(broker, bad_id, masks)
    redeliver(broker, dict(job, job_id="job-2"), {**masks, UPPER: str(outside)})
    redeliver(broker, dict(job, job_id="job-3"), {UPPER: masks[UPPER]})
    for job_id, why in [("../../etc", "valid id"), ("job-2", "TEMP_FOLDER"),
                        ("job-3", "lack lower_body_mask")]:
        failed = wait_state(broker, job_id, "failed")
        assert failed["reason"] == "upload_invalid_delivery" and why in failed["detail"]
        assert acks(broker, job_id)
    assert rx.uploads == []
    assert list((up.root / "spool").iterdir()) == [] and list((up.root / "dead").iterdir()) == []


def test_missing_required_settings_stop_start_up(up):
    for var in ("MASK_ASSET_URL", "MASK_COMPONENT_SECRET"):
        done = up.run(**{var: ""})
        assert done.returncode == 2 and var in done.stderr and "Traceback" not in done.stderr
    short = up.run(MASK_COMPONENT_SECRET="tiny")
    assert short.returncode == 2 and "too short" in short.stderr


def decode_manifest(path):
    return unpack((path / "manifest.msgpack").read_bytes())
