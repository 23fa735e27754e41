"""Starting and stopping the service's real processes in tests.

Every process is started in its own session (process group) and stopped with
:func:`stop`, always from a ``finally`` or fixture teardown. Nothing is ever
killed by name.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


#: Ports handed out by :func:`free_port` in this process (none is handed out twice).
_GIVEN: set[int] = set()


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago.

    Chosen below the kernel's ephemeral range: a port from that range can be
    taken, before the server under test binds it, by any outgoing connection
    (a ZeroMQ peer retrying its connect to that very port can even connect to
    itself), which failed a bind with "Address already in use" now and then.
    """
    low = min(_ephemeral_low(), 65536)
    candidates = [p for p in range(max(1024, low - 12000), low) if p not in _GIVEN]
    for port in random.sample(candidates, min(200, len(candidates))):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _GIVEN.add(port)
        return port
    raise RuntimeError("no free TCP port below the ephemeral range")


def start(module: str, env: Mapping[str, str], *args: str, log_path: Path | None = None,
          ) -> subprocess.Popen:
    """``python -m module args`` from the project root, in a new process group.

    ``env`` is added to a copy of the current environment. Output goes to
    ``log_path`` (or is discarded) so a chatty process never blocks on a pipe.
    """
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **env}
    # Closed here once the child holds its own copy of the descriptor.
    log = open(log_path, "ab") if log_path else None  # noqa: SIM115
    out = subprocess.DEVNULL if log is None else log
    try:
        return subprocess.Popen([sys.executable, "-m", module, *args], cwd=ROOT, env=full_env,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    finally:
        if log is not None:
            log.close()


def stop(proc: subprocess.Popen | None, sig: int = signal.SIGTERM, timeout: float = 15.0) -> None:
    """Signal ``proc``'s whole process group, then SIGKILL it if it lingers."""
    if proc is None or proc.poll() is not None:
        _reap_group(proc)
        return
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        pass
    _reap_group(proc)


def kill(proc: subprocess.Popen) -> None:
    """SIGKILL ``proc``'s process group at once (a crash, as tests simulate it)."""
    stop(proc, signal.SIGKILL, timeout=10.0)


def _reap_group(proc: subprocess.Popen | None) -> None:
    if proc is None:
        return
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pass


def wait_for(predicate: Callable[[], object], timeout: float, interval: float = 0.05,
             what: str = "condition") -> None:
    """Poll ``predicate`` until it is true; fail the test after ``timeout`` s.

    Only the truth of its result counts, so it may return e.g. a list (non-empty ends it)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")
