"""The uploader's protocol decisions, driven directly (no sockets, no process):
spool then ack, duplicates, refusals and malformed messages."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import pytest

from common.config import QueueSettings
from common.wire import LOWER, SEG_MAP, UPPER, decode, make_job
from uploader.core import UploaderCore
from uploader.outbox import Outbox
from uploader.records import Counters, Ledger
from uploader.runner import Stores
from uploader.spool import Spool


class Rig:
    """A core over real stores in a temporary directory, recording what it submits."""

    def __init__(self, tmp: Path) -> None:
        self.temp = tmp / "temp"
        root = tmp / "state" / "uploader"
        self.stores = Stores(root, Spool(root, self.temp), Ledger(root / "delivered", QueueSettings().remember_finished),
                             Counters(root / "counters.json"), Outbox(root / "outbox"))
        self.submitted: list[str] = []
        self.core = UploaderCore(self.stores, self.submitted.append, threading.Lock())

    def job(self, job_id: str, *names: str) -> tuple[dict, dict[str, str]]:
        """A job and its mask files under TEMP_FOLDER (upper and lower unless ``names``)."""
        job_dir = self.temp / "jobs" / job_id
        job_dir.mkdir(parents=True)
        masks = {}
        for name in names or (UPPER, LOWER):
            masks[name] = str(job_dir / f"{name}.png")
            Path(masks[name]).write_bytes(f"png of {job_id} {name}".encode())
        return make_job(job_id, "user-1", "qwen", str(job_dir / "image.jpg"), 0.0), masks

    def deliver(self, job: object, masks: object) -> list[dict]:
        return [decode(f) for f in self.core.handle({"type": "deliver", "job": job,
                                                     "masks": masks})]

    def states(self) -> list[dict]:
        """The states waiting in the outbox, as the broker would get them."""
        return [decode(frame) for _, _, frame in self.stores.outbox.due(epoch=1)]


@pytest.fixture
def rig(tmp_path):
    return Rig(tmp_path)


def ack(job_id: str) -> dict:
    return {"v": 1, "type": "ack", "job_id": job_id}


def test_a_delivery_is_spooled_durably_then_acked_and_submitted(rig):
    job, masks = rig.job("job-1", UPPER, LOWER, SEG_MAP)
    assert rig.deliver(job, masks) == [ack("job-1")]
    assert rig.stores.spool.where("job-1") == "spooled"
    entry = rig.stores.spool.load("job-1")
    assert entry.job == job and entry.files() == {n: Path(p).read_bytes() for n, p in masks.items()}
    assert rig.submitted == ["job-1"] and rig.states() == []


def test_a_spool_disk_fault_gets_no_ack_so_the_broker_sends_again(rig, monkeypatch, caplog):
    job, masks = rig.job("job-1")

    def full_disk(*_):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(rig.stores.spool, "add", full_disk)
    assert rig.deliver(job, masks) == []
    assert rig.submitted == [] and rig.states() == [] and "upload_spool_failed" in caplog.text
    monkeypatch.undo()
    assert rig.deliver(job, masks) == [ack("job-1")]   # the broker's second try


def test_a_duplicate_is_acked_again_and_not_spooled_twice(rig, monkeypatch, caplog):
    caplog.set_level(logging.INFO, "uploader.core")
    job, masks = rig.job("job-1")
    rig.deliver(job, masks)
    spooled = []
    monkeypatch.setattr(rig.stores.spool, "add", lambda *a: spooled.append(a))
    assert rig.deliver(job, masks) == [ack("job-1")]
    assert spooled == [] and "deliver_duplicate" in caplog.text
    # submitted again: a no-op in the pool unless the first hand-off broke off half-way
    assert rig.submitted == ["job-1", "job-1"] and rig.states() == []


def test_a_duplicate_of_a_delivered_job_repeats_done(rig):
    job, masks = rig.job("job-1")
    rig.stores.ledger.add("job-1")
    assert rig.deliver(job, masks) == [ack("job-1")]
    assert rig.stores.spool.where("job-1") is None and rig.submitted == []
    assert [(s["job_id"], s["state"]) for s in rig.states()] == [("job-1", "done")]


def test_a_duplicate_of_a_dead_lettered_job_repeats_its_failure(rig):
    job, masks = rig.job("job-1")
    rig.deliver(job, masks)
    entry = rig.stores.spool.load("job-1")
    rig.stores.spool.dead_letter(entry, {"reason": "upload_rejected_401", "detail": "no"})
    assert rig.deliver(job, masks) == [ack("job-1")]
    assert rig.submitted == ["job-1"]   # only the first time
    [state] = rig.states()
    assert (state["state"], state["reason"], state["detail"]) == \
        ("failed", "upload_rejected_401", "no")


@pytest.mark.parametrize("change, why", [
    (lambda m, outside: {**m, UPPER: outside}, "upper_body_mask path is not under TEMP_FOLDER"),
    (lambda m, outside: {UPPER: m[UPPER]}, "masks lack lower_body_mask"),
    (lambda m, outside: {**m, "extra": m[UPPER]}, "unknown mask name 'extra'"),
    (lambda m, outside: {**m, LOWER: m[LOWER] + ".gone"}, "lower_body_mask file is missing"),
    (lambda m, outside: [m[UPPER], m[LOWER]], "masks must map mask names to paths"),
])
def test_a_delivery_that_can_never_upload_is_acked_and_failed(rig, tmp_path, change, why):
    outside = tmp_path / "outside.png"
    outside.write_bytes(b"not yours")
    job, masks = rig.job("job-1")
    assert rig.deliver(job, change(masks, str(outside))) == [ack("job-1")]
    [state] = rig.states()
    assert (state["job_id"], state["state"], state["reason"], state["detail"]) == \
        ("job-1", "failed", "upload_invalid_delivery", why)
    assert rig.stores.spool.where("job-1") is None and rig.submitted == []


@pytest.mark.parametrize("job, shown", [
    ({"job_id": "../../etc"}, "../../etc"),
    ({"job_id": 7}, "7"),
    ({}, "None"),
    ("not a job", "None"),
])
def test_an_unusable_job_id_is_acked_and_failed_at_once_without_touching_disk(rig, job, shown):
    _, masks = rig.job("job-1")
    frames = rig.deliver(job, masks)
    assert frames == [ack(shown), {"v": 1, "type": "state", "job_id": shown, "state": "failed",
                                   "reason": "upload_invalid_delivery",
                                   "detail": "job_id is not a valid id"}]
    assert rig.states() == [] and rig.submitted == []
    assert list(rig.stores.spool.spool_dir.iterdir()) == []


def test_an_internal_fault_gets_no_ack_and_the_core_goes_on(rig, monkeypatch, caplog):
    job, masks = rig.job("job-1")
    monkeypatch.setattr(rig.stores.spool, "where", lambda _: 1 / 0)
    assert rig.deliver(job, masks) == []
    assert "deliver_internal_error" in caplog.text and "ZeroDivisionError" in caplog.text


def test_other_messages_get_no_answer(rig, caplog):
    assert rig.core.handle({"type": "heartbeat"}) == []
    assert "broker_unexpected_message" not in caplog.text
    assert rig.core.handle({"type": "job", "job": {}}) == []
    assert "broker_unexpected_message" in caplog.text


def test_ready_and_heartbeat_carry_the_counters_and_the_spool(rig, monkeypatch):
    rig.stores.counters.bump("delivered", 2)
    job, masks = rig.job("job-1")
    rig.deliver(job, masks)
    ready = decode(rig.core.ready())
    assert ready["type"] == "ready" and ready["counters"]["delivered"] == 2
    beat = decode(rig.core.heartbeat({"upload": {"count": 1}}))
    assert (beat["counters"]["delivered"], beat["timings"], beat["spool"]) == \
        (2, {"upload": {"count": 1}}, {"depth": 1, "dead": 0})

    def unreadable():
        raise PermissionError("spool")

    monkeypatch.setattr(rig.stores.spool, "depths", unreadable)
    assert decode(rig.core.heartbeat({}))["spool"] == {}
