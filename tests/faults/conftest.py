"""Fixtures of the fault suite: service trees that are always stopped and whose logs
are checked for the secret, the random SCHP checkpoint, and the summary line with
the suite's job accounting.

Every tree lives under the test's own ``tmp_path`` and is stopped in the
fixture's teardown (its processes in parallel, by process group, never by name).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.faults import kit
from tests.support import ledger
from tests.support.receiver import Receiver
from tests.support.service import ServiceTree
from tests.support.trees import close_tree, secret_leaks, start_all


@pytest.fixture
def make_tree(tmp_path: Path) -> Iterator[Callable[..., ServiceTree]]:
    """``make_tree(workers=2, start=True, receiver=None, **env)``: a ServiceTree under
    tmp_path. With ``start=False`` nothing is started (the test starts what it needs).
    Every tree is closed at teardown, and its logs and state must not hold the secret.
    """
    trees: list[ServiceTree] = []

    def make(workers: int = 2, start: bool = True, receiver: Receiver | None = None,
             **env: str) -> ServiceTree:
        tree = ServiceTree(tmp_path / f"tree{len(trees)}", workers=workers, extra_env=env,
                           receiver=receiver)
        trees.append(tree)
        if start:
            start_all(tree)
        return tree

    try:
        yield make
    finally:
        for tree in trees:
            close_tree(tree)
    leaks = secret_leaks(*[t.logs for t in trees], *[Path(t.env["STATE_DIR"]) for t in trees])
    assert not leaks, f"the secret appears in {leaks}"


@pytest.fixture(scope="module")
def schp_weights(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A random-weight ATR SCHP checkpoint (267 MB), once per module, deleted afterwards."""
    path = kit.save_schp_checkpoint(tmp_path_factory.mktemp("schp"))
    try:
        yield path
    finally:
        path.unlink(missing_ok=True)


def pytest_terminal_summary(terminalreporter) -> None:
    """One line with the fault suite's accounting, when any of it ran."""
    totals = ledger.TOTALS
    if not totals and not kit.BAD_INPUTS and not kit.FUZZED:
        return
    terminalreporter.write_line(
        f"fault suite: jobs accepted {totals['accepted']}, delivered exactly once "
        f"{totals['delivered']}, dead-lettered {totals['dead_lettered']}, failed with a "
        f"reason {totals['failed_other']}, lost {totals['lost']}; bad inputs tried "
        f"{len(kit.BAD_INPUTS)}, generated requests {len(kit.FUZZED)}")
