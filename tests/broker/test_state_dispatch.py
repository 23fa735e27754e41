"""The broker core on its own: submission outcomes and the FIFO dispatch rule."""

from broker.protocol import FRONT
from common import wire
from tests.broker.fakes import ROOT, Harness, dispatched, reply


def test_accepted_job_is_journalled_before_it_is_queued():
    h = Harness()
    answer = h.submit("job-1")
    assert (answer["outcome"], answer["state"], answer["queue_size"], answer["queue_max"]) == \
        ("accepted", "queued", 1, 10)
    assert answer["req"] == 7
    assert [r["op"] for r in h.journal.records] == ["accept"]
    assert h.query("job-1")["state"] == "queued"


def test_duplicate_job_id_is_not_queued_twice_and_reports_current_state():
    h = Harness()
    h.submit("job-1")
    h.worker("w1")
    answer = h.submit("job-1")
    assert (answer["outcome"], answer["state"]) == ("duplicate", "processing")
    assert h.stats()["queue_current"] == 0 and h.stats()["in_flight"] == 1
    assert [r["op"] for r in h.journal.records] == ["accept", "dispatch"]


def test_room_answers_whether_a_submit_would_fit_and_changes_nothing():
    h = Harness(max_size=2)
    ask = lambda: reply(h.core.handle_front(b"fe", wire.encode("room", req=3), h.now), FRONT)
    assert ask() == {"v": 1, "type": "room", "req": 3, "open": True, "queue_size": 0,
                     "queue_max": 2}
    h.submit("a")
    h.submit("b")
    records = len(h.journal.records)
    assert (ask()["open"], ask()["queue_size"]) == (False, 2)
    assert len(h.journal.records) == records
    h.core.stopping = True
    h.worker("w1")              # one job leaves the queue, but a stopping broker takes none
    assert ask()["open"] is False


def test_queue_full_refuses_without_journalling():
    h = Harness(max_size=2)
    outcomes = [h.submit(f"j{i}")["outcome"] for i in range(3)]
    assert outcomes == ["accepted", "accepted", "queue_full"]
    assert len(h.journal.records) == 2
    assert h.query("j2") is None


def test_journal_failure_refuses_the_job_and_leaves_nothing_half_done():
    h = Harness()
    h.journal.fail = True
    answer = h.submit("job-1")
    assert answer["outcome"] == "error" and "No space left" in answer["error"]
    assert h.query("job-1") is None and h.stats()["queue_current"] == 0
    h.journal.fail = False
    assert h.submit("job-1")["outcome"] == "accepted"


def test_invalid_ids_and_paths_outside_temp_folder_are_errors():
    h = Harness()
    assert h.submit("../etc")["error"] == "job_id is not a valid id"
    assert h.submit("ok-1", user_id="bad/user")["error"] == "user_id is not a valid id"
    assert "TEMP_FOLDER" in h.submit("ok-2", path="/etc/passwd")["error"]
    assert h.journal.records == []


def test_shutting_down_refuses_new_jobs():
    h = Harness()
    h.core.stopping = True
    assert h.submit("job-1")["error"] == "shutting down"


def test_fifo_head_goes_to_the_worker_idle_longest_one_job_each():
    h = Harness()
    for i in range(4):
        h.submit(f"j{i}")
    assert dispatched(h.worker("w1")) == [(b"w1", "j0")]
    assert dispatched(h.worker("w2")) == [(b"w2", "j1")]
    # A busy worker's heartbeat never gets it a second job.
    assert dispatched(h.worker("w1", "heartbeat", busy=True)) == []
    assert dispatched(h.result("w2", "j1")) == []          # done, but not asking yet
    assert dispatched(h.worker("w2")) == [(b"w2", "j2")]
    assert h.query("j3")["queue_position"] == 0


def test_a_job_submitted_while_workers_are_idle_starts_at_once_in_order():
    h = Harness()
    h.worker("w1")
    h.worker("w2")
    outs = h.core.handle_front(b"fe", wire.encode("submit", req=1, job=wire.make_job(
        "a", "u", "qwen", f"{ROOT}/a.jpg", 1.0)), h.now)
    assert reply(outs, FRONT)["outcome"] == "accepted"
    assert dispatched(outs) == [(b"w1", "a")]
    b = h.core.handle_front(b"fe", wire.encode("submit", req=2, job=wire.make_job(
        "b", "u", "qwen", f"{ROOT}/b.jpg", 1.0)), h.now)
    assert dispatched(b) == [(b"w2", "b")]


def test_inline_workers_get_the_photo_bytes_others_get_none():
    h = Harness()
    h.storage.images[f"{ROOT}/j0.jpg"] = b"JPEGDATA"
    h.storage.images[f"{ROOT}/j1.jpg"] = b"OTHER"
    h.submit("j0")
    h.submit("j1")
    remote = [wire.decode(o.frame) for o in h.worker("remote", inline_images=True)]
    local = [wire.decode(o.frame) for o in h.worker("local")]
    assert remote[0]["image"] == b"JPEGDATA" and remote[0]["deadline_s"] == 30.0
    assert local[0]["image"] is None and local[0]["job"]["image_path"] == f"{ROOT}/j1.jpg"


def test_unknown_idle_worker_heartbeat_counts_as_ready_after_a_broker_restart():
    h = Harness()
    h.submit("j0")
    assert dispatched(h.worker("w1", "heartbeat", busy=False)) == [(b"w1", "j0")]
    assert dispatched(h.worker("w2", "heartbeat", busy=True)) == []
    assert h.stats()["per_worker"]["w2"]["busy"] is True


def test_invalid_frames_are_dropped_without_harm():
    h = Harness()
    h.submit("j0")
    for frame in (b"\xc1junk", b"", wire.encode("ready"), wire.encode("ack", job_id="x")):
        assert h.core.handle_worker(b"x", frame, h.now) == []
        assert h.core.handle_front(b"x", frame, h.now) == []
    assert h.core.handle_worker(b"x", wire.encode("result", job_id="j0", attempt=0,
                                                  masks={}), h.now) == []
    assert h.stats()["queue_current"] == 1


def test_stats_report_real_figures():
    h = Harness()
    h.at(1000.0).submit("j0")
    h.submit("j1")
    h.worker("w1", engine="schp")
    h.worker("w2", "heartbeat", busy=True, model_loaded=False)
    stats = h.at(1012.5).stats()
    assert stats["queue_current"] == 1 and stats["in_flight"] == 1 and stats["workers"] == 2
    assert stats["queue_max"] == 10 and stats["uptime_sec"] == 12  # whole seconds
    assert stats["segmentation_ready"] is True and stats["engine"] == "parser,schp"
    w1 = stats["per_worker"]["w1"]
    assert (w1["busy"], w1["job_id"], w1["engine"]) == (True, "j0", "schp")
    assert w1["last_seen_age_s"] == 12.5
    assert stats["uploader_alive"] is False and stats["jobs_processed"] == 0


def test_segmentation_is_not_ready_without_a_loaded_model():
    h = Harness()
    assert h.stats()["segmentation_ready"] is False and h.stats()["engine"] is None
    h.worker("w1", model_loaded=False)
    assert h.stats()["segmentation_ready"] is False


def test_stats_pass_on_how_each_worker_runs_its_engine():
    h = Harness()
    h.worker("w1", engine="schp", precision="bf16", backend="openvino",
             precision_because="SCHP_PRECISION=auto and the CPU has bf16 matrix units (amx_bf16)",
             backend_because="SCHP_BACKEND=auto and the device is cpu")
    h.worker("w2")
    per = h.stats()["per_worker"]
    assert (per["w1"]["precision"], per["w1"]["backend"]) == ("bf16", "openvino")
    assert per["w1"]["precision_because"].startswith("SCHP_PRECISION=auto")
    assert "precision" not in per["w2"]  # pose workers have none
