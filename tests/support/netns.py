"""A second "host" for tests: a network namespace joined to ours by a veth pair.

:class:`NetnsLink` creates ``qmcN<pid>`` with one end of a veth pair inside it and
the other end here, on a private /30 (``10.213.X.1`` here, ``10.213.X.2`` there)
that exists only for the test: nothing outside the namespace the test made is
ever addressed. :meth:`NetnsLink.cut` / :meth:`NetnsLink.mend` take the far end
of the link down and up, as a pulled cable or a dead switch port would.

:meth:`NetnsLink.close` (always from ``finally``) kills whatever still runs inside
the namespace (only the test's own processes can be there) and deletes it, which
also removes both ends of the veth pair.
"""

from __future__ import annotations

import ipaddress
import os
import signal
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from tests.support.procs import ROOT

#: The private range the test links are carved from (a /30 each).
SUBNET_PREFIX = "10.213"


class NetnsUnavailable(Exception):
    """Namespaces cannot be made here (not root, no ``ip``, no CAP_NET_ADMIN, ...)."""


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30, check=check)


def _free_subnet() -> int:
    """A third octet X such that no interface here has an address in 10.213.X.0/24."""
    used = set()
    for line in _ip("-o", "-4", "addr", "show").stdout.splitlines():
        fields = line.split()
        addr = fields[fields.index("inet") + 1].split("/")[0]
        if addr.startswith(SUBNET_PREFIX + "."):
            used.add(int(addr.split(".")[2]))
    start = os.getpid() % 250
    for offset in range(250):
        if (start + offset) % 250 + 1 not in used:
            return (start + offset) % 250 + 1
    raise NetnsUnavailable(f"every {SUBNET_PREFIX}.X.0/24 is in use here")


class NetnsLink:
    """A namespace ``name`` reached over ``here_ip`` <-> ``there_ip``."""

    def __init__(self) -> None:
        tag = f"{os.getpid() % 100000}"
        self.name = f"qmcns{tag}"
        self.here_dev, self.there_dev = f"qmch{tag}", f"qmcr{tag}"
        self.created = False
        try:
            octet = _free_subnet()
        except (OSError, subprocess.SubprocessError) as exc:
            raise NetnsUnavailable(f"cannot run ip: {exc}") from None
        net = ipaddress.ip_network(f"{SUBNET_PREFIX}.{octet}.0/30")
        self.here_ip, self.there_ip = (str(h) for h in net.hosts())
        self.prefix = net.prefixlen

    def open(self) -> NetnsLink:
        """Create the namespace and the link; raises :class:`NetnsUnavailable`."""
        self._run("netns", "add", self.name)
        self.created = True
        try:
            self._run("link", "add", self.here_dev, "type", "veth", "peer", "name", self.there_dev)
            self._run("link", "set", self.there_dev, "netns", self.name)
            self._run("addr", "add", f"{self.here_ip}/{self.prefix}", "dev", self.here_dev)
            self._run("link", "set", self.here_dev, "up")
            self._run("netns", "exec", self.name, "ip", "addr", "add",
                      f"{self.there_ip}/{self.prefix}", "dev", self.there_dev)
            self._run("netns", "exec", self.name, "ip", "link", "set", self.there_dev, "up")
            self._run("netns", "exec", self.name, "ip", "link", "set", "lo", "up")
        except NetnsUnavailable:
            self.close()
            raise
        return self

    def _run(self, *args: str) -> None:
        try:
            result = _ip(*args, check=False)
        except (OSError, subprocess.SubprocessError) as exc:
            raise NetnsUnavailable(f"ip {' '.join(args)}: {exc}") from None
        if result.returncode != 0:
            raise NetnsUnavailable(f"ip {' '.join(args)}: {result.stderr.strip()}")

    # -- the link --------------------------------------------------------
    def cut(self) -> None:
        """Take the far end down: nothing passes either way until :meth:`mend`."""
        self._run("netns", "exec", self.name, "ip", "link", "set", self.there_dev, "down")

    def mend(self) -> None:
        self._run("netns", "exec", self.name, "ip", "link", "set", self.there_dev, "up")

    # -- processes over there ----------------------------------------------
    def start(self, module: str, env: Mapping[str, str], *args: str, log_path: Path,
              ) -> subprocess.Popen:
        """``python -m module args`` inside the namespace, in its own process group.

        ``env`` is the whole environment (nothing of this one leaks in but PATH and
        HOME), as it would be on another host. ``ip netns exec`` execs the command, so
        the returned process is the Python process itself.
        """
        base = {k: os.environ[k] for k in ("PATH", "HOME") if k in os.environ}
        with open(log_path, "ab") as out:
            return subprocess.Popen(
                ["ip", "netns", "exec", self.name, sys.executable, "-m", module, *args],
                cwd=ROOT, env={**base, "PYTHONUNBUFFERED": "1", **env}, stdout=out,
                stderr=subprocess.STDOUT, start_new_session=True)

    def pids(self) -> list[int]:
        result = _ip("netns", "pids", self.name, check=False)
        return [int(p) for p in result.stdout.split()] if result.returncode == 0 else []

    def close(self) -> None:
        """Kill what still runs inside, delete the namespace (and so the veth pair)."""
        if not self.created:
            return
        for pid in self.pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        _ip("netns", "del", self.name, check=False)
        _ip("link", "del", self.here_dev, check=False)  # gone with the namespace already
        self.created = False


def open_link() -> NetnsLink:
    """A ready :class:`NetnsLink`; raises :class:`NetnsUnavailable` with the reason."""
    if os.geteuid() != 0:
        raise NetnsUnavailable("network namespaces need root (CAP_NET_ADMIN)")
    return NetnsLink().open()
