"""Durable owner-only files: private folders, atomic replacement."""

from __future__ import annotations

import errno
import stat
from unittest import mock

import pytest

from common import files


def _mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_private_dir_makes_every_missing_parent_owner_only(tmp_path):
    existing = tmp_path / "shared"
    existing.mkdir(mode=0o755)
    existing.chmod(0o755)
    made = files.private_dir(existing / "temp" / "jobs" / "j1")
    assert made.is_dir()
    assert [_mode(p) for p in (made, made.parent, made.parent.parent)] == [0o700] * 3
    assert _mode(existing) == 0o755  # folders that exist are left alone
    assert files.private_dir(made) == made  # again: nothing to do


def test_atomic_write_replaces_whole_file_owner_only(tmp_path):
    target = tmp_path / "state.json"
    files.atomic_write(target, b"old")
    files.atomic_write(target, b"new")
    assert target.read_bytes() == b"new" and _mode(target) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]


def test_failed_replace_keeps_the_old_content_and_no_temp_file(tmp_path):
    target = tmp_path / "masks.png"
    files.replace_file(target, b"old")
    with (mock.patch.object(files.os, "fsync", side_effect=OSError(errno.ENOSPC, "full")),
          pytest.raises(OSError)):
        files.replace_file(target, b"new")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["masks.png"]


def test_write_new_refuses_an_existing_path(tmp_path):
    target = tmp_path / "photo.jpg"
    files.write_new(target, b"first")
    with pytest.raises(FileExistsError):
        files.write_new(target, b"second")
    assert target.read_bytes() == b"first"
