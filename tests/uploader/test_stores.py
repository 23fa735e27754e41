"""The uploader's on-disk stores: spool, dead letters, ledger, counters, outbox."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from common.config import load_settings
from common.wire import decode, make_job
from tests.uploader.conftest import png_bytes
from uploader.outbox import Outbox
from uploader.records import Counters, Ledger
from uploader.runner import Stores
from uploader.spool import Spool, SpoolError


@pytest.fixture
def temp(tmp_path):
    path = tmp_path / "temp"
    path.mkdir()
    return path


@pytest.fixture
def spool(tmp_path, temp):
    return Spool(tmp_path / "state" / "uploader", temp)


def write_job(temp, job_id, seg_map=False):
    job_dir = temp / "jobs" / job_id
    job_dir.mkdir(parents=True)
    (job_dir / "image.jpg").write_bytes(b"photo")
    names = ["upper_body_mask", "lower_body_mask"] + (["seg_map"] if seg_map else [])
    masks = {}
    for i, name in enumerate(names):
        (job_dir / f"{name}.png").write_bytes(png_bytes(i))
        masks[name] = str(job_dir / f"{name}.png")
    return make_job(job_id, "u", "qwen", str(job_dir / "image.jpg"), 0.0), masks


def mode(path):
    return stat.S_IMODE(path.stat().st_mode)


def test_spooled_job_is_a_private_copy_with_a_manifest(spool, temp):
    job, masks = write_job(temp, "job-1", seg_map=True)
    entry = spool.add(job, masks)
    assert spool.where("job-1") == "spooled" and spool.pending() == ["job-1"]
    assert entry.files() == {n: Path(p).read_bytes() for n, p in masks.items()}
    assert list(entry.files()) == ["upper_body_mask", "lower_body_mask", "seg_map"]
    loaded = spool.load("job-1")
    assert loaded.job == job and loaded.attempts == [] and loaded.manifest["sources"] == masks
    for path in [spool.spool_dir, spool.dead_dir, entry.path]:
        assert mode(path) == 0o700
    for path in entry.path.iterdir():
        assert mode(path) == 0o600


@pytest.mark.parametrize("change, message", [
    (lambda m, t: m.pop("lower_body_mask"), "lack lower_body_mask"),
    (lambda m, t: m.update(other="/x.png"), "unknown mask name"),
    (lambda m, t: m.update(upper_body_mask="relative/path.png"), "not under TEMP_FOLDER"),
    (lambda m, t: m.update(upper_body_mask="/etc/hostname"), "not under TEMP_FOLDER"),
    (lambda m, t: m.update(upper_body_mask=str(t / "jobs" / "missing.png")), "missing"),
])
def test_bad_mask_paths_are_refused(spool, temp, change, message):
    job, masks = write_job(temp, "job-1")
    change(masks, temp)
    with pytest.raises(SpoolError, match=message):
        spool.add(job, masks)
    assert spool.where("job-1") is None and list(spool.spool_dir.iterdir()) == []


def test_a_symlink_escaping_temp_folder_is_refused(spool, temp, tmp_path):
    job, masks = write_job(temp, "job-1")
    outside = tmp_path / "outside.png"
    outside.write_bytes(b"private")
    link = temp / "jobs" / "job-1" / "link.png"
    link.symlink_to(outside)
    masks["upper_body_mask"] = str(link)
    with pytest.raises(SpoolError, match="not under TEMP_FOLDER"):
        spool.add(job, masks)


@pytest.mark.parametrize("job_id", ["../escape", "a/b", "", ".hidden", "x" * 200])
def test_invalid_job_ids_never_become_paths(spool, job_id):
    with pytest.raises(SpoolError, match="invalid job_id"):
        spool.where(job_id)
    with pytest.raises(SpoolError, match="invalid job_id"):
        spool.add(make_job(job_id, "u", "qwen", "/x", 0.0), {})


def test_dead_letter_keeps_everything_and_records_why(spool, temp):
    job, masks = write_job(temp, "job-1")
    entry = spool.add(job, masks)
    spool.dead_letter(entry, {"reason": "upload_rejected_401", "status": 401, "body": "no"})
    assert spool.where("job-1") == "dead" and spool.pending() == []
    dead = spool.load("job-1", dead=True)
    assert dead.manifest["dead"]["status"] == 401 and dead.files() == entry.files()
    assert all(os.path.exists(p) for p in masks.values())  # temp files untouched


def test_only_files_under_temp_folder_are_removed(spool, temp, tmp_path):
    job, masks = write_job(temp, "job-1")
    outside = tmp_path / "photo-outside.jpg"
    outside.write_bytes(b"keep me")
    job["image_path"] = str(outside)
    (temp / "jobs" / "job-1" / "image.jpg").unlink()
    entry = spool.add(job, masks)
    removed = spool.remove_temp_files(entry)
    assert sorted(removed) == sorted(masks.values())
    assert outside.exists() and not (temp / "jobs" / "job-1").exists()
    assert (temp / "jobs").is_dir()


def test_interrupted_spooling_leftovers_are_cleared(spool):
    leftover = spool.spool_dir / ".tmp-job-9-1-2"
    leftover.mkdir()
    (leftover / "upper_body_mask.png").write_bytes(b"half")
    assert spool.pending() == [] and not leftover.exists()


def test_ledger_remembers_and_trims_the_oldest(tmp_path):
    ledger = Ledger(tmp_path / "delivered", keep=3)
    for i in range(5):
        ledger.add(f"job-{i}")
        os.utime(ledger.dir / f"job-{i}", (1000 + i, 1000 + i))
    assert "job-0" in ledger and "../x" not in ledger
    assert ledger.trim() == 2
    assert [f"job-{i}" in ledger for i in range(5)] == [False, False, True, True, True]
    assert "job-4" in Ledger(tmp_path / "delivered", keep=3)  # another instance (process) sees it


def test_the_ledger_keeps_as_many_jobs_as_the_broker_remembers(tmp_path):
    config = tmp_path / "own.yaml"
    config.write_text("queue:\n  remember_finished: 7\n")
    env = {"STATE_DIR": str(tmp_path / "state"), "TEMP_FOLDER": str(tmp_path / "tmp")}
    assert Stores.open(load_settings(environ=env)).ledger.keep == 10_000
    assert Stores.open(load_settings(config, environ=env)).ledger.keep == 7


def test_counters_persist_across_instances(tmp_path):
    counters = Counters(tmp_path / "c.json")
    zeros = {"delivered": 0, "retried": 0, "dead_lettered": 0, "attempts_2xx": 0,
             "attempts_3xx": 0, "attempts_4xx": 0, "attempts_5xx": 0, "attempts_error": 0}
    assert counters.read() == zeros
    counters.bump("retried", 3)
    counters.bump("delivered")
    counters.bump("attempts_5xx")
    assert Counters(tmp_path / "c.json").read() == {**zeros, "delivered": 1, "retried": 3,
                                                    "attempts_5xx": 1}
    with pytest.raises(ValueError):
        counters.bump("nonsense")


def test_outbox_keeps_the_latest_state_until_the_broker_kept_talking(tmp_path):
    box = Outbox(tmp_path / "outbox")
    box.put("job-1", "uploading", None, "attempt 1")
    box.put("job-1", "done")
    [(job_id, version, frame)] = box.due(epoch=1)
    assert decode(frame)["state"] == "done"
    box.mark_sent(job_id, version, epoch=1, now=100.0)
    assert box.due(epoch=1) == [] and len(box.due(epoch=2)) == 1   # a reconnect re-sends
    assert box.retire(epoch=1, heard_at=102.0, hold_s=5.0) == 0      # broker heard too soon
    assert box.retire(epoch=2, heard_at=200.0, hold_s=5.0) == 0      # sent on another epoch
    assert box.retire(epoch=1, heard_at=105.0, hold_s=5.0) == 1
    assert len(box) == 0 and list(box.dir.iterdir()) == []


def test_outbox_survives_restarts_and_takes_states_from_other_processes(tmp_path):
    Outbox(tmp_path / "outbox").put("job-1", "failed", "upload_rejected_401", "HTTP 401")
    service = Outbox(tmp_path / "outbox")
    assert service.rescan() == 1
    [(job_id, version, frame)] = service.due(epoch=1)
    service.mark_sent(job_id, version, 1, now=0.0)
    Outbox(tmp_path / "outbox").put("job-1", "done")           # e.g. a redrive
    assert service.rescan() == 1
    [(_, _, frame)] = service.due(epoch=1)
    assert decode(frame)["state"] == "done"
    assert mode(tmp_path / "outbox" / "job-1") == 0o600


def test_outbox_rescan_never_replaces_a_newer_state_with_an_older_file(tmp_path):
    # rescan reads a file, then takes the lock: an upload thread may have put a newer
    # state in between. The older bytes must not overwrite it (done -> uploading).
    box = Outbox(tmp_path / "outbox")
    box.put("job-1", "uploading", None, "attempt 1")
    older = (tmp_path / "outbox" / "job-1").read_bytes()
    box.put("job-1", "done")
    (tmp_path / "outbox" / "job-1").write_bytes(older)   # what the racing rescan read
    box.rescan()
    [(_, _, frame)] = box.due(epoch=1)
    assert decode(frame)["state"] == "done"
