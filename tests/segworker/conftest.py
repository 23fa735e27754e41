"""Fixtures shared by the segworker tests (opt-in: none is autouse here)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread: steadier on the shared 2-core machine (restored after).

    Use it for a whole module with ``pytestmark = pytest.mark.usefixtures("one_thread")``.
    """
    import torch  # here, so modules that never use the fixture do not pay for torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
