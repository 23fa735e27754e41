"""The service run by the project's own ``supervisord.conf``, for tests.

:class:`SupervisedService` writes a copy of the real configuration in which
``%(here)s/var`` (socket, pid file, logs) points to a temporary folder and
every other ``%(here)s`` to the project root, starts ``supervisord -n`` in a
process group of its own with the settings in its environment (free loopback
ports, temp folders, the stand-in receiver), and drives it with
``supervisorctl``. :meth:`SupervisedService.close` shuts it down and kills the
process group whatever happened; call it from a ``finally``.

It offers what :class:`tests.support.ledger.JobLedger` needs (``url``, ``env``,
``receiver``, ``job``, ``stats``).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.support import procs
from tests.support.receiver import Receiver
from tests.support.service import SECRET, ServiceClient

#: The venv's bin folder (supervisord, supervisorctl).
BIN = Path(sys.executable).parent
#: Longest a supervisorctl command may take, in seconds (a restart waits for drains).
CTL_TIMEOUT_S = 120


class SupervisedService(ServiceClient):
    """supervisord running the project's programs (see the module docstring)."""

    def __init__(self, root: Path, workers: int = 2, extra_env: dict[str, str] | None = None):
        self.root = root
        self.var = root / "var"
        for sub in ("run", "log"):
            (self.var / sub).mkdir(parents=True, exist_ok=True, mode=0o700)
        self.logs = self.var / "log"
        self.conf = root / "supervisord.conf"
        text = (procs.ROOT / "supervisord.conf").read_text()
        self.conf.write_text(text.replace("%(here)s/var", str(self.var))
                             .replace("%(here)s", str(procs.ROOT)))
        self.receiver = Receiver(SECRET)
        self.port = procs.free_port()
        self.env = {
            "HOST": "127.0.0.1", "PORT": str(self.port), "WORKER_COUNT": str(workers),
            "BROKER_FRONTEND_ENDPOINT": f"tcp://127.0.0.1:{procs.free_port()}",
            "BROKER_UPLOADER_ENDPOINT": f"tcp://127.0.0.1:{procs.free_port()}",
            "TEMP_FOLDER": str(root / "tmp"), "STATE_DIR": str(root / "state"),
            "SEGMENTATION_ENGINE": "auto", "SCHP_WEIGHTS": "", "MASK_COMPONENT_SECRET": SECRET,
            "UPLOAD_BACKOFF_BASE_S": "0.02", "HEARTBEAT_INTERVAL_S": "0.25",
            "WORKER_THREADS": "1", "LOG_LEVEL": "INFO", **(extra_env or {}),
        }
        worker_bind = f"tcp://127.0.0.1:{procs.free_port()}"
        self.env.update(BROKER_WORKER_BIND=worker_bind, BROKER_WORKER_ENDPOINT=worker_bind)
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> SupervisedService:
        """Start the receiver and supervisord (``-n``, in its own process group)."""
        self.env["MASK_ASSET_URL"] = self.receiver.start()
        with open(self.logs / "supervisord.out", "ab") as out:
            self.proc = subprocess.Popen(
                [str(BIN / "supervisord"), "-n", "-c", str(self.conf)], cwd=self.root,
                env={**os.environ, **self.env}, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True)
        return self

    def ctl(self, *args: str) -> subprocess.CompletedProcess:
        """``supervisorctl -c <conf> args``; its output is in the result."""
        return subprocess.run([str(BIN / "supervisorctl"), "-c", str(self.conf), *args],
                              capture_output=True, text=True, timeout=CTL_TIMEOUT_S,
                              env={**os.environ, **self.env})

    def close(self) -> None:
        """``supervisorctl shutdown``, then kill whatever is left of the process group."""
        try:
            if self.proc is not None and self.proc.poll() is None:
                self.ctl("shutdown")
                try:
                    self.proc.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    pass
        finally:
            if self.proc is not None:
                # supervisord puts each program in a process group of its own
                for pid in [*children(self.proc.pid), self.proc.pid]:
                    try:
                        os.killpg(pid, signal.SIGKILL)
                    except (ProcessLookupError, PermissionError):
                        pass
                self.proc.wait(timeout=10)
            self.receiver.stop()

    def wait_ready(self, workers: int, timeout: float = 90.0) -> None:
        procs.wait_for(lambda: (h := self.health()).get("segmentation_ready")
                       and h.get("workers", 0) >= workers, timeout, interval=0.2,
                       what=f"{workers} supervised workers ready ({self.logs})")


def children(pid: int) -> list[int]:
    """Pids of the live processes whose parent is ``pid`` (from /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields and int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found
