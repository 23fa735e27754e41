"""Helpers around :class:`tests.support.service.ServiceTree` for tests that break things.

Starting a tree with a useful failure message, starting it without workers,
stopping all of its processes at once, finding a worker's process from its id,
writing a user config file, looking for the secret in what a tree left on disk, and
the fixture that gives a test module the whole service (:func:`service_fixture`).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import pytest

from tests.support.service import SECRET, ServiceTree


def start_all(tree: ServiceTree) -> ServiceTree:
    """``tree.start_all()``; if the tree never gets ready, the failure names each process's
    exit status and the end of its log (pytest removes old temp folders)."""
    try:
        return tree.start_all()
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{explain(tree)}") from None


def explain(tree: ServiceTree) -> str:
    """Each process's state and the last lines of its log."""
    lines = []
    for name, proc in tree.procs.items():
        log = tree.log_path(name)
        tail = log.read_text(errors="replace").splitlines()[-5:] if log.exists() else []
        lines.append(f"{name}: exit status {proc.poll()}; log tail: {tail}")
    return "\n".join(lines)


def start_without_workers(tree: ServiceTree) -> ServiceTree:
    """Broker, uploader and front end, but no worker: accepted jobs stay queued."""
    tree.start("broker")
    tree.start("uploader")
    tree.start("frontend")
    tree.wait_http()
    return tree


def close_tree(tree: ServiceTree) -> None:
    """Stop every process of ``tree`` at once (SIGTERM to each group, in parallel), then the
    receiver. Sequential stops would add each process's drain time to the suite's runtime."""
    threads = [threading.Thread(target=tree.stop, args=(name,)) for name in list(tree.procs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    tree.receiver.stop()


def worker_process(tree: ServiceTree, worker_id: str) -> str:
    """The ``tree.procs`` name of the worker whose id (``host-pid-index``) is ``worker_id``."""
    pid = int(worker_id.rsplit("-", 2)[1])
    [name] = [n for n, p in tree.procs.items() if p.pid == pid]
    return name


def config_file(folder: Path, text: str) -> str:
    """A user config file (layered over config.yaml) for ``SCHP_CONFIG_PATH``."""
    path = folder / "fault-config.yaml"
    path.write_text(text)
    return str(path)


def secret_leaks(*folders: Path, secret: str = SECRET) -> list[str]:
    """Files under ``folders`` (logs, dead letters, spool manifests) that contain ``secret``."""
    leaks = []
    for folder in folders:
        for path in folder.rglob("*") if folder.is_dir() else ():
            if path.is_file() and secret.encode() in path.read_bytes():
                leaks.append(str(path))
    return leaks


@contextlib.contextmanager
def running_tree(root: Path, workers: int = 1, **env: str) -> Iterator[ServiceTree]:
    """A started tree under ``root``, always closed; afterwards its logs and state
    must not hold the secret."""
    tree = ServiceTree(root, workers=workers, extra_env=env)
    try:
        yield start_all(tree)
    finally:
        close_tree(tree)
    leaks = secret_leaks(tree.logs, Path(tree.env["STATE_DIR"]))
    assert not leaks, f"the secret appears in {leaks}"


def service_fixture(name: str, scope: Literal["function", "module"] = "function",
                    workers: int = 1, **env: str) -> Any:
    """A pytest fixture ``name`` (assign it to that name in a test module or conftest)
    that yields the whole service started (:func:`running_tree`, ``env`` added to its
    environment), once per ``scope``, stopped and checked for the secret afterwards."""
    @pytest.fixture(scope=scope, name=name)
    def whole_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceTree]:
        with running_tree(tmp_path_factory.mktemp(name), workers=workers, **env) as tree:
            yield tree
    return whole_service
