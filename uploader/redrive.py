"""``python -m uploader redrive [JOB_ID ...]``: send dead-lettered jobs again.

Each job gets a fresh set of attempts (``upload.retries`` after the first,
or ``--retries``). Delivered -> cleaned up exactly like a normal delivery
(ledger, temp files, dead-letter directory removed) and ``done`` handed to
the running service's outbox for the broker. Failed again -> it stays in
``dead/`` with the new status. Safe to run beside the service; two redrives
at once are refused.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from collections.abc import Sequence
from typing import TextIO

from common.config import Settings
from common.ids import is_valid_id

from .records import try_lock
from .runner import JobRunner, make_runner
from .spool import SpoolError

#: Exit status: every requested job was delivered.
EXIT_OK = 0
#: Exit status: some job is still dead-lettered, unknown, or invalid.
EXIT_SOME_FAILED = 1
#: Exit status: another redrive holds the lock.
EXIT_BUSY = 3


def redrive(settings: Settings, job_ids: Sequence[str], retries: int | None = None,
            out: TextIO = sys.stdout) -> int:
    """Redrive ``job_ids`` (all dead-lettered jobs when empty); one line per job
    on ``out``. Returns an exit status (see the ``EXIT_*`` constants)."""
    if retries is not None:
        settings = dataclasses.replace(
            settings, upload=dataclasses.replace(settings.upload, retries=retries))
    runner = make_runner(settings, time.sleep)
    lock_fd = try_lock(runner.stores.root / "redrive.lock")
    if lock_fd is None:
        print("redrive: another redrive is running; try again when it ends", file=out)
        return EXIT_BUSY
    try:
        return _redrive_all(runner, list(job_ids) or runner.stores.spool.dead_ids(), out)
    finally:
        os.close(lock_fd)


def _redrive_all(runner: JobRunner, job_ids: list[str], out: TextIO) -> int:
    status = EXIT_OK
    if not job_ids:
        print("redrive: no dead-lettered jobs", file=out)
    for job_id in job_ids:
        if not is_valid_id(job_id):
            print(f"{job_id[:80]!r}: not a valid job id", file=out)
            status = EXIT_SOME_FAILED
            continue
        if runner.stores.spool.where(job_id) != "dead":
            print(f"{job_id}: not dead-lettered", file=out)
            status = EXIT_SOME_FAILED
            continue
        try:
            result = runner.run(job_id, redrive=True)
        except (SpoolError, OSError) as exc:  # e.g. a damaged manifest: say so, go on
            print(f"{job_id}: cannot be redriven: {exc}", file=out)
            status = EXIT_SOME_FAILED
            continue
        if result is None or result.ok:
            print(f"{job_id}: delivered", file=out)
        else:
            print(f"{job_id}: still dead-lettered ({result.reason}: {result.detail})", file=out)
            status = EXIT_SOME_FAILED
    return status
