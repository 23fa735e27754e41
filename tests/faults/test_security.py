"""Security properties that must hold while the service runs: owner-only files,
loopback-only internal sockets, and a secret that never reaches a log."""

from __future__ import annotations

import stat
from pathlib import Path

from common.config import DEFAULT_CONFIG_PATH, load_settings
from tests.support import sockets
from tests.support.ledger import JobLedger
from tests.support.observe import spooled
from tests.support.procs import wait_for
from tests.support.service import person_photo
from tests.support.trees import secret_leaks, start_without_workers

#: Permission bits no file or folder of the service may grant to group or others.
GROUP_OR_OTHER = 0o077


def loose_modes(*roots: Path) -> list[str]:
    """Files and folders under ``roots`` that grant anything to group or others.

    The roots themselves (TEMP_FOLDER, STATE_DIR) are the operator's folders and are
    left out: they hold only fixed names (incoming, jobs, broker, uploader); everything
    the service creates in them must be owner-only."""
    loose = []
    for root in roots:
        for path in root.rglob("*"):
            try:
                mode = path.lstat().st_mode
            except FileNotFoundError:  # replaced (temp file + rename) while we looked
                continue
            if not stat.S_ISLNK(mode) and mode & GROUP_OR_OTHER:
                loose.append(f"{path} {stat.filemode(mode)}")
    return loose


def test_temp_spool_and_journal_files_are_owner_only_mid_run(make_tree):
    tree = start_without_workers(make_tree(workers=1, start=False, UPLOAD_BACKOFF_BASE_S="1.0"))
    temp, state = Path(tree.env["TEMP_FOLDER"]), Path(tree.env["STATE_DIR"])
    tree.receiver.set_down(True)  # the masks wait in TEMP_FOLDER and the spool
    book = JobLedger(tree)
    photo = person_photo()
    for job_id in ("modes-1", "modes-2"):
        assert book.post(job_id, photo).status_code == 202
    # queued: the photos are in TEMP_FOLDER/incoming, the jobs in the journal
    assert len(list((temp / "incoming").iterdir())) == 2
    assert (state / "broker" / "journal.log").is_file()
    assert not loose_modes(temp, state)

    tree.start_worker(0)
    wait_for(lambda: spooled(state) == {"modes-1", "modes-2"}, 60, what="both jobs spooled")
    # processed: masks under TEMP_FOLDER/jobs, copies in the uploader's spool, its outbox
    assert len(list((temp / "jobs").iterdir())) == 2
    assert list((state / "uploader" / "outbox").iterdir())
    assert not loose_modes(temp, state)

    tree.receiver.set_down(False)
    tally = book.settle(timeout=60)
    assert tally.delivered == 2
    assert not loose_modes(temp, state)


def test_internal_sockets_listen_on_loopback_only(make_tree):
    # The defaults: only the HTTP server listens beyond loopback.
    defaults = load_settings(DEFAULT_CONFIG_PATH, environ={})
    for endpoint in (defaults.broker.frontend_endpoint, defaults.broker.uploader_endpoint,
                     defaults.broker.worker_bind):
        assert endpoint.startswith("tcp://127.0.0.1:"), endpoint

    tree = make_tree(workers=1)
    port_of = {name: int(tree.env[var].rsplit(":", 1)[1]) for name, var in (
        ("front", "BROKER_FRONTEND_ENDPOINT"), ("uploader", "BROKER_UPLOADER_ENDPOINT"),
        ("workers", "BROKER_WORKER_BIND"))}
    assert sockets.listening(tree.procs["broker"].pid) == {
        ("127.0.0.1", port) for port in port_of.values()}
    assert sockets.listening(tree.procs["frontend"].pid) == {("127.0.0.1", tree.port)}
    for name in ("uploader", "segworker:0"):
        assert sockets.listening(tree.procs[name].pid) == set(), name


def test_secret_never_logged_even_when_the_asset_service_refuses_it(make_tree):
    # The uploader holds a secret the receiver does not know: every upload is refused
    # (401) and dead-lettered. With DEBUG logs, the secret must still appear nowhere.
    wrong = "wrong-secret-0123456789abcdef"
    tree = make_tree(workers=1, MASK_COMPONENT_SECRET=wrong, LOG_LEVEL="DEBUG")
    book = JobLedger(tree)
    assert book.post("secret-refused", person_photo()).status_code == 202
    tally = book.settle(timeout=60)
    assert tally.failed == {"secret-refused": "upload_rejected_401"}
    assert tally.dead_lettered == 1
    folders = (tree.logs, Path(tree.env["STATE_DIR"]), Path(tree.env["TEMP_FOLDER"]))
    assert (Path(tree.env["STATE_DIR"]) / "uploader" / "dead" / "secret-refused").is_dir()
    assert not secret_leaks(*folders, secret=wrong)
    assert not secret_leaks(*folders)
