"""Group commit: one fsync per broker loop turn, and nothing sent before it.

The broker loop lets the journal only write during a turn and fsyncs once before
it sends the turn's replies (a 202's ``accepted`` among them) or deletes a photo.
These tests pin both halves: fewer fsyncs than records under a burst, and no
reply at all when that fsync fails.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest
import zmq

from broker import journal as journal_mod
from broker.files import TempStorage
from broker.journal import Journal, JournalError, parse
from broker.server import BrokerServer
from common import wire
from common.config import load_settings
from tests.broker.clients import FrontEnd, broker_env
from tests.support import procs


def test_appends_write_at_once_and_one_sync_fsyncs_them_all(tmp_path, monkeypatch):
    journal = Journal(tmp_path, group_commit=True)
    journal.open()
    calls = []
    real_fsync = os.fsync
    monkeypatch.setattr(journal_mod.os, "fsync", lambda fd: (calls.append(fd), real_fsync(fd)))
    for i in range(5):
        journal.append({"op": "n", "i": i})
    assert calls == [] and journal.unsynced == 5
    # Written (a crashed process loses nothing), only not yet fsynced.
    records, _, problem = parse(journal.path.read_bytes())
    assert [r["i"] for r in records] == list(range(5)) and problem is None
    assert journal.sync() == 5 and len(calls) == 1
    assert journal.sync() == 0 and len(calls) == 1      # nothing new: no fsync
    assert journal.stats() == {"records": 5, "fsyncs": 1, "bytes": journal.size,
                               "group_commit": True}
    journal.close()


def test_without_group_commit_every_append_is_fsynced(tmp_path):
    journal = Journal(tmp_path)
    journal.open()
    for i in range(3):
        journal.append({"op": "n", "i": i})
    assert (journal.stats()["fsyncs"], journal.unsynced) == (3, 0)
    journal.close()


def test_a_failed_sync_raises_and_keeps_the_records_unsynced(tmp_path, monkeypatch):
    journal = Journal(tmp_path, group_commit=True)
    journal.open()
    journal.append({"op": "n"})

    def broken(fd):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(journal_mod.os, "fsync", broken)
    with pytest.raises(JournalError, match="fsync failed: Input/output error"):
        journal.sync()
    assert journal.unsynced == 1
    monkeypatch.undo()
    journal.close()


def test_deferred_photo_deletes_wait_for_the_call(tmp_path):
    storage = TempStorage(tmp_path, defer_deletes=True)
    photo = tmp_path / "incoming" / "p.jpg"
    photo.parent.mkdir()
    photo.write_bytes(b"x")
    storage.delete_input(str(photo))
    assert photo.exists()
    storage.run_deferred_deletes()
    assert not photo.exists()


class LoopRig:
    """A BrokerServer in a thread of this process, so its journal can be broken."""

    def __init__(self, root: Path) -> None:
        self.env = broker_env(root)
        self.temp = Path(self.env["TEMP_FOLDER"])
        self.temp.mkdir(parents=True)
        self.server = BrokerServer(load_settings(environ=self.env))
        self.code: list[int] = []
        self.thread = threading.Thread(target=lambda: self.code.append(self.server.run()),
                                       daemon=True)
        self.ctx = zmq.Context()
        self.front = FrontEnd(self.ctx, self.env["BROKER_FRONTEND_ENDPOINT"])

    def close(self) -> None:
        self.server.request_stop()
        self.thread.join(10)
        self.front.close()
        self.ctx.term()


@pytest.fixture
def loop_rig(tmp_path):
    rig = LoopRig(tmp_path)
    rig.thread.start()
    try:
        yield rig
    finally:
        rig.close()


def test_a_burst_of_submits_costs_fewer_fsyncs_than_records(loop_rig):
    loop_rig.front.wait_up()
    before = loop_rig.front.stats()["journal"]
    for i in range(50):    # all sent before the first reply is read: they share turns
        photo = loop_rig.temp / "uploads" / f"b{i}.jpg"
        photo.parent.mkdir(exist_ok=True)
        photo.write_bytes(b"photo")
        loop_rig.front.send("submit", req=10_000 + i,
                            job=wire.make_job(f"b{i}", "u", "qwen", str(photo), time.time()))
    replies = [loop_rig.front.recv() for _ in range(50)]
    assert {r["outcome"] for r in replies} == {"accepted"}
    after = loop_rig.front.stats()["journal"]
    assert after["records"] - before["records"] == 50
    assert 1 <= after["fsyncs"] - before["fsyncs"] < 50


def test_no_reply_is_sent_when_the_group_fsync_fails(loop_rig, monkeypatch):
    loop_rig.front.wait_up()
    monkeypatch.setattr(journal_mod.os, "fsync", lambda fd: (_ for _ in ()).throw(
        OSError(5, "Input/output error")))
    photo = loop_rig.temp / "uploads" / "doomed.jpg"
    photo.parent.mkdir(exist_ok=True)
    photo.write_bytes(b"photo")
    loop_rig.front.send("submit", req=1,
                        job=wire.make_job("doomed", "u", "qwen", str(photo), time.time()))
    assert loop_rig.front.poll(2.0) is None          # never an "accepted" for it
    procs.wait_for(lambda: loop_rig.code == [1], 10, what="the broker to stop with 1")
    assert photo.exists()
