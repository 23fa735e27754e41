"""PhotoStore: private, durable files; clean failures."""

from __future__ import annotations

import errno
import os
import stat
from unittest import mock

import pytest

from common import files
from frontend.photo_store import PhotoStore, StorageError


def test_write_is_private_and_named_after_the_job(tmp_path):
    store = PhotoStore(tmp_path)
    path = store.write("job-1", "PNG", b"data")
    assert path.parent == tmp_path.resolve() / "incoming"
    assert path.name.startswith("job-1-") and path.suffix == ".png"
    assert path.read_bytes() == b"data"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert store.write("job-1", "JPEG", b"x") != path  # same job id, distinct files


def test_discard_only_touches_its_own_folder(tmp_path):
    store = PhotoStore(tmp_path)
    path = store.write("job-1", "JPEG", b"x")
    outside = tmp_path / "keep.jpg"
    outside.write_bytes(b"x")
    assert store.discard(outside) is False and outside.exists()
    assert store.discard(path) is True and not path.exists()
    assert store.discard(path) is False


@pytest.mark.parametrize("code, no_space", [(errno.ENOSPC, True), (errno.EDQUOT, True),
                                            (errno.EROFS, False), (errno.EACCES, False)])
def test_failures_are_classified_and_leave_nothing(tmp_path, code, no_space):
    store = PhotoStore(tmp_path)
    with (mock.patch.object(files.os, "fsync", side_effect=OSError(code, os.strerror(code))),
          pytest.raises(StorageError) as caught):
        store.write("job-1", "JPEG", b"x")
    assert caught.value.no_space is no_space
    assert str(tmp_path) not in str(caught.value)  # clients never see server paths
    assert list((tmp_path / "incoming").iterdir()) == []


def test_missing_temp_folder_is_created_owner_only(tmp_path):
    temp_folder = tmp_path / "var" / "tmp"
    PhotoStore(temp_folder).write("job-1", "PNG", b"data")
    assert stat.S_IMODE(temp_folder.stat().st_mode) == 0o700
    assert stat.S_IMODE(temp_folder.parent.stat().st_mode) == 0o700
