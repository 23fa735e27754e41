"""The journal file: framing, torn tails, compaction, and replay into the broker's state."""

import errno
import os
import stat

import pytest

from broker import journal as journal_mod
from broker.journal import Journal, JournalError, frame, parse, restore_book
from tests.broker.fakes import Harness, delivered, dispatched


def _scenario(tmp_path) -> Harness:
    """Six jobs: j0 stored (hand-off pending), j1 retried and in flight, j2 in flight,
    j3-j5 queued."""
    journal = Journal(tmp_path / "broker")
    journal.open()
    h = Harness(journal=journal.append)
    for i in range(6):
        h.submit(f"j{i}")
    h.worker("w1")
    h.worker("w2")
    h.worker("w3")
    h.result("w1", "j0")
    h.failed("w2", "j1", "worker_error", retryable=True)
    h.worker("w1")                  # takes j1 again (attempt 1)
    journal.close()
    return h


def test_replay_restores_queue_in_flight_at_head_and_pending_deliveries(tmp_path):
    before = _scenario(tmp_path)
    assert list(before.book.queue) == ["j3", "j4", "j5"]
    assert list(before.book.in_flight) == ["j2", "j1"]           # dispatch order
    book, recovered = restore_book(Journal(tmp_path / "broker"), remember_finished=100)
    assert recovered == ["j1", "j2"]                              # acceptance order
    assert list(book.queue) == ["j1", "j2", "j3", "j4", "j5"]
    assert list(book.pending) == ["j0"] and book.jobs["j0"].masks
    assert book.jobs["j1"].job["attempt"] == 1 and book.jobs["j1"].attempts == 2
    assert (book.counters.accepted, book.counters.retried) == (6, 1)
    # The restored broker delivers j0 and dispatches every job in order.
    h = Harness(book=book)
    assert delivered(h.uploader("ready", counters={})) == ["j0"]
    assert dispatched(h.worker("a")) == [(b"a", "j1")]
    assert dispatched(h.worker("b")) == [(b"b", "j2")]
    assert h.submit("j3")["outcome"] == "duplicate"


def test_restart_compacts_to_one_snapshot_with_owner_only_permissions(tmp_path):
    _scenario(tmp_path)
    journal = Journal(tmp_path / "broker")
    book, _ = restore_book(journal, remember_finished=100)
    records, _end, problem = parse(journal.path.read_bytes())
    assert [r["op"] for r in records] == ["snapshot"] and problem is None
    assert stat.S_IMODE(os.stat(journal.path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(journal.directory).st_mode) == 0o700
    assert not list(journal.directory.glob("*.tmp"))
    # Records appended after the snapshot replay on top of it.
    journal.append({"op": "requeue", "job_id": "j3", "attempt": 1, "reason": "x", "t": 5.0})
    journal.close()
    again, _ = restore_book(Journal(tmp_path / "broker"), remember_finished=100)
    assert next(iter(again.queue)) == "j3" and again.counters.retried == book.counters.retried + 1


def test_a_compaction_cut_short_by_a_crash_leaves_no_temp_file(tmp_path):
    journal = Journal(tmp_path)
    journal.open()
    journal.append({"op": "accept", "t": 1.0, "job": {"job_id": "a"}})
    journal.close()
    stale = tmp_path / ".journal.log.0badc0de.tmp"
    stale.write_bytes(b"half a snapshot")
    records = Journal(tmp_path).open()
    assert [r["op"] for r in records] == ["accept"] and not stale.exists()


@pytest.mark.parametrize("tail", [b"\x00\x00", frame({"op": "handed", "job_id": "j0"})[:-3],
                                  b"\x00" * 64])
def test_torn_tail_is_dropped_logged_and_cut_off(tmp_path, tail, caplog):
    journal = Journal(tmp_path)
    journal.open()
    journal.append({"op": "accept", "t": 1.0, "job": {"job_id": "a"}})
    journal.close()
    with open(journal.path, "ab") as f:
        f.write(tail)
    reopened = Journal(tmp_path)
    assert [r["job"]["job_id"] for r in reopened.open()] == ["a"]
    assert "journal_torn_tail" in caplog.text
    reopened.append({"op": "accept", "t": 2.0, "job": {"job_id": "b"}})
    reopened.close()
    records, _, problem = parse(journal.path.read_bytes())
    assert [r["job"]["job_id"] for r in records] == ["a", "b"] and problem is None


def test_corrupt_record_stops_replay_at_the_last_good_one():
    good = frame({"op": "a"}) + frame({"op": "b"})
    bad = bytearray(frame({"op": "c"}))
    bad[-1] ^= 0xFF
    records, end, problem = parse(good + bytes(bad) + frame({"op": "d"}))
    assert [r["op"] for r in records] == ["a", "b"] and end == len(good)
    assert problem == "checksum mismatch"


def test_failed_append_raises_and_leaves_no_partial_record(tmp_path, monkeypatch):
    journal = Journal(tmp_path)
    journal.open()
    journal.append({"op": "one"})
    size = journal.path.stat().st_size

    def full_disk(fd, data):
        os.ftruncate(fd, size + 3)   # part of the frame made it before the error
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(journal_mod, "write_all", full_disk)
    with pytest.raises(JournalError, match="No space left"):
        journal.append({"op": "two"})
    monkeypatch.undo()
    assert journal.path.stat().st_size == size
    journal.close()


def test_compaction_is_due_once_the_journal_outgrows_its_snapshot(tmp_path):
    journal = Journal(tmp_path, compact_min_bytes=200)
    journal.open()
    journal.compact({"op": "snapshot", "pad": "x" * 150})
    while not journal.needs_compaction:
        journal.append({"op": "noop", "pad": "y" * 40})
    assert journal.size > 2 * 150
    journal.compact({"op": "snapshot", "pad": "z"})
    assert not journal.needs_compaction
    journal.close()


def test_unreadable_records_are_skipped_not_fatal(tmp_path, caplog):
    journal = Journal(tmp_path)
    journal.open()
    journal.append({"op": "accept", "t": 1.0, "job": {"job_id": "a", "user_id": "u"}})
    journal.append({"op": "teleport", "job_id": "a"})
    journal.close()
    book, _ = restore_book(Journal(tmp_path), remember_finished=10)
    assert list(book.queue) == ["a"] and "journal_record_skipped" in caplog.text


def test_an_unreadable_snapshot_stops_start_up_instead_of_dropping_jobs(tmp_path):
    journal = Journal(tmp_path)
    journal.open()
    journal.compact({"op": "snapshot", "version": 99})
    journal.close()
    with pytest.raises(JournalError, match="snapshot cannot be read"):
        restore_book(Journal(tmp_path), remember_finished=10)


def test_a_failed_compaction_is_not_retried_on_every_loop_turn(tmp_path, monkeypatch):
    journal = Journal(tmp_path, compact_min_bytes=100)
    journal.open()
    while not journal.needs_compaction:
        journal.append({"op": "noop", "pad": "y" * 40})

    def full_disk(path, data, sync=True):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(journal_mod, "replace_file", full_disk)
    clock = [1000.0]
    monkeypatch.setattr(journal_mod.time, "monotonic", lambda: clock[0])
    with pytest.raises(JournalError):
        journal.compact({"op": "snapshot"})
    assert not journal.needs_compaction          # backs off: the loop stays responsive
    clock[0] += journal_mod.COMPACT_RETRY_S + 1
    assert journal.needs_compaction              # and tries again later
    monkeypatch.undo()
    journal.compact({"op": "snapshot"})
    assert not journal.needs_compaction
    journal.close()
