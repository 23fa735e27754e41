"""Reading what the service's processes did, from their JSON logs and their files.

Used by the fault tests to prove *how* a scenario unfolded (a worker really died
mid-job, a retry really waited for Retry-After), not just that it ended well.
"""

from __future__ import annotations

import json
from pathlib import Path

#: Worker log events that say where a job stands on that worker.
JOB_PROGRESS_EVENTS = ("job_started", "job_done", "job_failed")


def log_events(path: Path, name: str | None, job_id: str | None = None) -> list[dict]:
    """The JSON log lines of event ``name`` (any when None) about ``job_id`` (any when
    None) in one process log, oldest first; lines that are not JSON are skipped, and
    a log not written yet has none."""
    if not path.exists():
        return []
    return text_events(path.read_text(errors="replace"), name, job_id)


def text_events(text: str, name: str | None, job_id: str | None = None) -> list[dict]:
    """Like :func:`log_events`, for log text already read (e.g. several logs joined)."""
    events = []
    for line in text.splitlines():
        if not line.startswith("{"):
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if (name is None or entry.get("event") == name) and \
                (job_id is None or entry.get("job_id") == job_id):
            events.append(entry)
    return events


def mid_job(worker_log: Path, job_id: str) -> bool:
    """True when a worker's last word about ``job_id`` is ``job_started``."""
    said = [e["event"] for e in log_events(worker_log, None, job_id)
            if e["event"] in JOB_PROGRESS_EVENTS]
    return bool(said) and said[-1] == "job_started"


def spooled(state_dir: Path) -> set[str]:
    """Job ids in the uploader's spool (acknowledged to the broker, not yet delivered)."""
    spool = state_dir / "uploader" / "spool"
    if not spool.is_dir():
        return set()
    return {p.name for p in spool.iterdir() if (p / "manifest.msgpack").is_file()}
