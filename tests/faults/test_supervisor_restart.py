"""``supervisorctl restart all`` in the middle of a run, with the project's real
supervisord.conf: every accepted job is still delivered exactly once."""

from __future__ import annotations

import threading
from pathlib import Path

from tests.support.ledger import JobLedger
from tests.support.service import person_photo
from tests.support.supervised import SupervisedService
from tests.support.trees import secret_leaks

#: Programs in supervisord.conf (with WORKER_COUNT=2).
PROGRAMS = ("broker", "uploader", "segworker:segworker_00", "segworker:segworker_01",
            "frontend")


def test_supervisorctl_restart_all_mid_run(tmp_path):
    service = SupervisedService(tmp_path, workers=2)
    try:
        service.start()
        service.wait_ready(workers=2)
        book = JobLedger(service)
        photo = person_photo()
        for i in range(10):
            assert book.post(f"sv-before-{i}", photo).status_code == 202

        # A client keeps submitting through the restart, retrying the same job_id after a
        # 503 or a refused connection, as docs/api.md tells clients to.
        during = [f"sv-during-{i}" for i in range(15)]
        submitter = threading.Thread(
            target=lambda: [book.submit(j, photo, retry_for=120) for j in during])
        submitter.start()
        restart = service.ctl("restart", "all")
        submitter.join(150)
        assert not submitter.is_alive()
        assert restart.returncode == 0, restart.stdout + restart.stderr
        for program in PROGRAMS:
            assert f"{program}: stopped" in restart.stdout
            assert f"{program}: started" in restart.stdout

        tally = book.settle(timeout=120)
        assert tally.accepted == 25 and tally.delivered == 25
        status = service.ctl("status").stdout.splitlines()
        assert len(status) == len(PROGRAMS) and all("RUNNING" in line for line in status)
    finally:
        service.close()
    leaks = secret_leaks(service.logs, Path(service.env["STATE_DIR"]))
    assert not leaks, f"the secret appears in {leaks}"
