"""TEMP_FOLDER full, read-only, or unusable: clean 5xx JSON answers, no crash, and the
service takes photos again as soon as the disk does.

Tests run as root, for whom file modes do not make a folder read-only. So
TEMP_FOLDER is a small tmpfs of its own (filled to the last byte, remounted
read-only); where this machine refuses to mount, that test is skipped with the
reason, and the mount-free test (the photo folder's path blocked by a file)
still runs.
"""

from __future__ import annotations

import json

import pytest

from tests.support import scratch_fs
from tests.support.ledger import JobLedger
from tests.support.procs import wait_for
from tests.support.service import ServiceTree, person_photo
from tests.support.trees import close_tree, start_without_workers

#: Size of the scratch TEMP_FOLDER, in bytes: a few photos and their masks.
SCRATCH_BYTES = 4 << 20
#: The answer to a photo when TEMP_FOLDER is full.
FULL = "the server's temporary photo storage is full; retry later"


def refused_cleanly(tree: ServiceTree, job_id: str, resp, status: int, error: str) -> None:
    """``resp`` is the expected JSON error, and every process is still up and healthy."""
    assert resp is not None and resp.status_code == status, resp and resp.text
    assert resp.json() == {"error": error}
    assert resp.headers["Retry-After"] == "30"
    assert all(p.poll() is None for p in tree.procs.values()), "a process died"
    assert tree.health().get("status") in ("ok", "degraded")  # answers (degraded: no worker)
    assert not list((tree.root / "tmp" / "incoming").glob(f"{job_id}-*")), "a photo was left"


def test_temp_folder_full_then_read_only(make_tree):
    tree = make_tree(workers=1, start=False)
    temp = tree.root / "tmp"
    try:
        scratch_fs.mount_tmpfs(temp, SCRATCH_BYTES)
    except scratch_fs.Unavailable as exc:
        pytest.skip(f"no file system of its own for TEMP_FOLDER: {exc}")
    try:
        start_without_workers(tree)  # the first job waits in the queue
        book = JobLedger(tree)
        photo = person_photo()  # 75 kB: more than the last page a full tmpfs can have
        assert book.post("disk-queued", photo).status_code == 202

        filler = scratch_fs.fill(temp)
        assert scratch_fs.free_bytes(temp) < len(photo)
        refused_cleanly(tree, "disk-full", book.post("disk-full", photo), 507, FULL)
        # The queued job meets the full disk when its masks are stored: it waits at
        # the head of the queue (without spending its attempts) until space returns,
        # and its record does not show the server's paths.
        tree.start_worker(0)
        wait_for(lambda: tree.job("disk-queued").get("reason") == "store_failed", 60,
                 what="the queued job to meet the full disk")
        record = tree.job("disk-queued")
        assert record["state"] == "queued" and str(temp) not in json.dumps(record)

        filler.unlink()  # space returns: the waiting job and the same request succeed
        tree.wait_state("disk-queued", ("done",), timeout=60)
        assert book.post("disk-full", photo).status_code == 202
        tree.wait_delivered(["disk-full"])

        scratch_fs.set_read_only(temp, True)
        try:
            refused_cleanly(tree, "disk-ro", book.post("disk-ro", photo), 503,
                            "the server's temporary photo storage cannot be written "
                            "(Read-only file system); retry later")
        finally:
            scratch_fs.set_read_only(temp, False)
        assert book.post("disk-ro", photo).status_code == 202
        tally = book.settle(timeout=60)
        assert tally.delivered == 3 and not tally.failed
    finally:
        close_tree(tree)
        scratch_fs.unmount(temp)


def test_temp_folder_unwritable_without_mount(make_tree):
    # Works on any machine: the photo folder's path is taken by a file, so no folder
    # can be made there (ENOTDIR/EEXIST), whoever the user is.
    tree = make_tree(workers=1)
    book = JobLedger(tree)
    photo = person_photo()
    incoming = tree.root / "tmp" / "incoming"
    assert book.post("disk-ok", photo).status_code == 202
    tree.wait_delivered(["disk-ok"])
    stash = incoming.rename(incoming.with_name("incoming.moved"))
    incoming.write_bytes(b"not a folder")
    resp = book.post("disk-blocked", photo)
    assert resp is not None and resp.status_code == 503
    assert resp.json()["error"].startswith("the server's temporary photo storage cannot be "
                                           "written (")
    assert resp.headers["Retry-After"] == "30"
    assert all(p.poll() is None for p in tree.procs.values()), "a process died"
    incoming.unlink()
    stash.rename(incoming)
    assert book.post("disk-blocked", photo).status_code == 202
    tally = book.settle(timeout=60)
    assert tally.delivered == 2
