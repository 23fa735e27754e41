"""Remote workers over a real network link, with CURVE on and photos inline.

A network namespace with its own veth link and private address stands in for a
second host (see :mod:`tests.support.netns`): the broker binds its worker socket
to our end of the link (``10.213.X.1``), and workers started inside the namespace
reach it only over that link, with their own empty ``TEMP_FOLDER`` and CURVE key
files made by ``python -m broker keygen``, as the README's "Remote workers"
section says for two real hosts. Front end, uploader and receiver stay on loopback.

Skips, with the reason, where namespaces cannot be made (not root, no ``ip``).
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import procs
from tests.support.netns import NetnsLink, NetnsUnavailable, open_link
from tests.support.service import ServiceTree, person_photo
from tests.support.sockets import listening
from tests.support.trees import close_tree, start_without_workers

#: A stand-in remote job takes this long: far beyond the test's cut, so it is surely in flight.
SLOW_JOB_S = 120.0


class RemoteSite:
    """The broker host's service (no workers of its own yet) and the "other host"."""

    def __init__(self, root: Path, link: NetnsLink) -> None:
        self.root, self.link = root, link
        self.keys, self.allowed = root / "keys", root / "authorized"
        for name in ("broker", "local", "worker-6", "stranger"):
            keygen(self.keys, name)
        self.allowed.mkdir()
        for name in ("local", "worker-6"):   # the stranger is not let in
            shutil.copy(self.keys / f"{name}.key", self.allowed)
        self.port = procs.free_port()
        self.worker_bind = f"tcp://{link.here_ip}:{self.port}"
        self.tree = ServiceTree(root / "broker-host", workers=0, extra_env={
            "BROKER_WORKER_BIND": self.worker_bind, "BROKER_WORKER_ENDPOINT": self.worker_bind,
            "BROKER_CURVE": "true",
            "BROKER_CURVE_SECRET_FILE": str(self.keys / "broker.key_secret"),
            "BROKER_CURVE_AUTHORIZED_DIR": str(self.allowed),
            # Local workers (on the broker host) authenticate like remote ones.
            "WORKER_CURVE_SECRET_FILE": str(self.keys / "local.key_secret"),
            "WORKER_CURVE_SERVER_KEY_FILE": str(self.keys / "broker.key")})
        self.remote: dict[str, subprocess.Popen] = {}

    def remote_env(self, key: str) -> dict[str, str]:
        """A remote worker's whole environment: only what the README tells that host."""
        tmp = self.root / f"remote-{key}-tmp"
        tmp.mkdir(exist_ok=True)
        env = self.tree.env
        return {"BROKER_WORKER_ENDPOINT": f"tcp://{self.link.here_ip}:{self.port}",
                "WORKER_INLINE_IMAGES": "true", "TEMP_FOLDER": str(tmp),
                "STATE_DIR": str(self.root / f"remote-{key}-state"),
                "WORKER_CURVE_SECRET_FILE": str(self.keys / f"{key}.key_secret"),
                "WORKER_CURVE_SERVER_KEY_FILE": str(self.keys / "broker.key"),
                "SEGMENTATION_ENGINE": "parser", "WORKER_THREADS": "1",
                "HEARTBEAT_INTERVAL_S": env["HEARTBEAT_INTERVAL_S"], "LOG_LEVEL": "INFO"}

    def start_remote(self, name: str, key: str, module: str = "segworker",
                     *args: str) -> subprocess.Popen:
        proc = self.link.start(module, self.remote_env(key), "--index", "0", *args,
                               log_path=self.log(name))
        self.remote[name] = proc
        return proc

    def log(self, name: str) -> Path:
        return self.tree.logs / f"{name}.log"

    def events(self, name: str, event: str) -> list[dict]:
        path = self.log(name) if name in self.remote else self.tree.log_path(name)
        found = []
        for line in path.read_text(errors="replace").splitlines() if path.exists() else ():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if record.get("event") == event:
                found.append(record)
        return found

    def close(self) -> None:
        for proc in self.remote.values():
            procs.stop(proc)
        close_tree(self.tree)


def keygen(folder: Path, name: str) -> None:
    """``python -m broker keygen FOLDER NAME``, the command the README gives."""
    done = subprocess.run([sys.executable, "-m", "broker", "keygen", str(folder), name],
                          cwd=procs.ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def worker_name(proc: subprocess.Popen, index: int = 0) -> str:
    """The id a worker gives itself (``host-pid-index``); ``ip netns exec`` keeps the pid."""
    return f"{socket.gethostname()}-{proc.pid}-{index}"


@pytest.fixture
def site(tmp_path: Path) -> Iterator[RemoteSite]:
    try:
        link = open_link()
    except NetnsUnavailable as exc:
        pytest.skip(f"no network namespace for a second host: {exc}")
    site = None
    try:
        site = RemoteSite(tmp_path, link)
        start_without_workers(site.tree)
        yield site
    finally:
        if site is not None:
            site.close()
        link.close()


def test_a_remote_worker_delivers_and_an_unknown_key_gets_no_job(site):
    tree = site.tree
    assert (site.link.here_ip, site.port) in listening(tree.procs["broker"].pid)
    # The stranger (a key outside the allow-list) connects first and would be first in line.
    stranger = site.start_remote("stranger", "stranger")
    procs.wait_for(lambda: site.events("stranger", "worker_started"), 120,
                   what="the stranger worker to start")
    time.sleep(2.0)   # many heartbeat intervals: its handshakes have been refused by now
    assert tree.post_photo("remote-1", person_photo()).status_code == 202
    time.sleep(2.0)
    assert tree.job("remote-1")["state"] == "queued"
    assert tree.stats()["workers"] == 0

    good = site.start_remote("worker-6", "worker-6")
    tree.wait_delivered(["remote-1"], timeout=120)
    record = tree.wait_state("remote-1", ("done",))
    assert record["worker"] == worker_name(good)
    [dispatch] = [e for e in site.events("broker", "job_dispatched")
                  if e["job_id"] == "remote-1"]
    assert dispatch["inline"] is True            # the photo travelled inside the message
    assert list(tree.stats()["per_worker"]) == [worker_name(good)]
    assert not site.events("stranger", "job_started")
    assert stranger.poll() is None               # refused, not crashed: it keeps trying
    assert tree.receiver.delivered_job_ids() == ["remote-1"]


def test_a_cut_link_sends_the_job_to_a_local_worker_and_it_is_delivered_once(site):
    tree = site.tree
    remote = site.start_remote("remote-slow", "worker-6", "devtools.standin_worker",
                               "--delay", str(SLOW_JOB_S))
    procs.wait_for(lambda: tree.stats()["workers"] == 1, 60, what="the remote worker")
    assert tree.post_photo("cut-1", person_photo()).status_code == 202
    procs.wait_for(lambda: site.events("remote-slow", "job_started"), 30,
                   what="the remote worker to start the job")
    assert tree.job("cut-1")["worker"] == worker_name(remote)

    site.link.cut()
    cut_at = time.monotonic()
    # A worker on the broker host (same socket, same CURVE rules) joins only now.
    local = procs.start("devtools.standin_worker", tree.env, "--index", "1",
                        log_path=tree.log_path("standin_local"))
    tree.procs["standin_local"] = local
    tree.wait_delivered(["cut-1"], timeout=60)
    record = tree.wait_state("cut-1", ("done",))
    assert record["worker"] == worker_name(local, 1)
    assert record["attempts"] == 2
    [lost] = [e for e in site.events("broker", "worker_lost") if e.get("job_id") == "cut-1"]
    assert lost["worker"] == worker_name(remote) and lost["why"] == "silent"
    assert time.monotonic() - cut_at < SLOW_JOB_S   # long before the remote could have finished

    # The link comes back; the remote worker reconnects and (stopped) sends its late
    # result for the old attempt, which the broker refuses: still one delivery.
    site.link.mend()
    procs.wait_for(lambda: worker_name(remote) in tree.stats()["per_worker"], 60,
                   what="the remote worker to reconnect")
    procs.stop(remote)
    procs.wait_for(lambda: any(e.get("job_id") == "cut-1"
                               for e in site.events("broker", "stale_result")), 30,
                   what="the broker to refuse the late result")
    time.sleep(1.0)
    assert tree.receiver.delivered_job_ids() == ["cut-1"]
    assert tree.job("cut-1")["state"] == "done"
