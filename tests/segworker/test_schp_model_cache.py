"""The on-disk cache of converted SCHP models: hits, and rebuilds of anything stale
or damaged (never an exception). The model files here are small stand-ins; the
OpenVINO round trip is in test_schp_runtime.py."""

from __future__ import annotations

import json
import os
import stat

import pytest

from segworker.schp import model_cache
from segworker.schp.model_cache import ModelCache, key_digest

KEY = {"backend": "openvino", "precision": "fp32", "input_size": 64, "weights_sha256": "ab" * 32,
       "openvino": "2026.4.1", "torch": "2.13.0"}


def _writer(payload: bytes = b"<net/>" * 100):
    def write(folder):
        (folder / "model.xml").write_bytes(payload)
        (folder / "model.bin").write_bytes(bytes(range(256)) * 40)
    return write


@pytest.fixture
def cache(tmp_path):
    return ModelCache(tmp_path / "state" / "schp" / "compiled")


def test_a_stored_entry_is_found_again_and_is_owner_only(cache):
    assert cache.lookup(KEY).path is None and cache.lookup(KEY).problem is None
    entry = cache.store(KEY, _writer())
    assert entry == cache.root / key_digest(KEY)
    found = cache.lookup(KEY)
    assert found.path == entry and found.problem is None
    assert (entry / "model.xml").read_bytes() == b"<net/>" * 100
    meta = json.loads((entry / "meta.json").read_text())
    assert meta["key"] == KEY and set(meta["files"]) == {"model.xml", "model.bin"}
    assert stat.S_IMODE(os.stat(entry / "model.bin").st_mode) == 0o600
    assert stat.S_IMODE(os.stat(cache.root).st_mode) == 0o700


@pytest.mark.parametrize("change", ["precision", "input_size", "weights_sha256", "openvino",
                                    "torch"])
def test_every_part_of_the_key_selects_its_own_entry(cache, change):
    cache.store(KEY, _writer())
    other = dict(KEY, **{change: "something else"})
    assert key_digest(other) != key_digest(KEY)
    assert cache.lookup(other).path is None


@pytest.mark.parametrize("damage,problem", [
    (lambda e: (e / "model.bin").write_bytes((e / "model.bin").read_bytes()[:100]), "wrong size"),
    (lambda e: _flip_a_byte(e / "model.bin"), "damaged"),
    (lambda e: (e / "model.xml").unlink(), "missing"),
    (lambda e: (e / "meta.json").unlink(), "incomplete"),
    (lambda e: (e / "meta.json").write_text("{not json"), "unreadable"),
    (lambda e: _edit_meta(e, key=dict(KEY, torch="1.0")), "key does not match"),
    (lambda e: _edit_meta(e, format=0), "another cache format"),
])
def test_a_damaged_or_stale_entry_is_reported_and_then_rebuilt(cache, damage, problem):
    entry = cache.store(KEY, _writer())
    damage(entry)
    found = cache.lookup(KEY)
    assert found.path is None and problem in found.problem
    rebuilt = cache.store(KEY, _writer(b"<new/>"))
    assert rebuilt == entry and cache.lookup(KEY).path == entry
    assert (entry / "model.xml").read_bytes() == b"<new/>"


def test_an_unwritable_cache_is_a_warning_not_an_error(tmp_path, caplog):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    cache = ModelCache(blocker / "compiled")
    assert cache.store(KEY, _writer()) is None
    assert cache.lookup(KEY).path is None
    assert any(getattr(r, "event", "") == "schp_cache_unwritable" for r in caplog.records)


def test_a_writer_that_fails_leaves_no_entry_and_no_temporary_folder(cache):
    def broken(folder):
        (folder / "model.xml").write_bytes(b"half")
        raise OSError(28, "No space left on device")
    assert cache.store(KEY, broken) is None
    assert cache.lookup(KEY).path is None
    assert list(cache.root.iterdir()) == []


def test_an_entry_another_worker_stored_meanwhile_is_kept(cache):
    theirs = {}

    def slow_writer(folder):
        _writer(b"<ours/>")(folder)
        theirs["entry"] = cache.store(KEY, _writer(b"<theirs/>"))  # finishes while we write

    assert cache.store(KEY, slow_writer) == theirs["entry"]
    assert cache.lookup(KEY).path == theirs["entry"]
    assert (theirs["entry"] / "model.xml").read_bytes() == b"<theirs/>"
    assert [p.name for p in cache.root.iterdir()] == [theirs["entry"].name]


def test_old_entries_are_pruned_least_recently_used_first(cache, monkeypatch):
    monkeypatch.setattr(model_cache, "KEEP_ENTRIES", 2)
    keys = [dict(KEY, input_size=size) for size in (64, 96, 128)]
    cache.store(keys[0], _writer())
    cache.store(keys[1], _writer())
    meta0 = cache.root / key_digest(keys[0]) / "meta.json"
    os.utime(meta0, (1, 1))  # entry 0 is the least recently used
    cache.store(keys[2], _writer())
    assert cache.lookup(keys[0]).path is None
    assert cache.lookup(keys[1]).path is not None and cache.lookup(keys[2]).path is not None


def test_leftover_temporary_folders_of_a_crash_are_removed(cache):
    cache.store(KEY, _writer())
    leftover = cache.root / ".tmp-crashed"
    leftover.mkdir()
    os.utime(leftover, (1, 1))
    cache.store(dict(KEY, input_size=96), _writer())
    assert not leftover.exists()


def _flip_a_byte(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def _edit_meta(entry, **changes):
    meta = json.loads((entry / "meta.json").read_text())
    meta.update(changes)
    (entry / "meta.json").write_text(json.dumps(meta))
