"""Counting the requests in progress, so a stopping server can let them finish."""

from __future__ import annotations

import asyncio


class InFlight:
    """A counter of requests being served, with a wait for it to reach zero.

    Handlers call :meth:`enter` when they start and :meth:`leave` exactly once
    when they end (finished or the client went away).
    """

    def __init__(self) -> None:
        self.count = 0
        self._idle = asyncio.Event()
        self._idle.set()

    def enter(self) -> None:
        self.count += 1
        self._idle.clear()

    def leave(self) -> None:
        self.count = max(self.count - 1, 0)
        if self.count == 0:
            self._idle.set()

    async def wait_idle(self, timeout_s: float) -> bool:
        """Wait until no request is in progress; False if ``timeout_s`` passed first."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout_s)
        except TimeoutError:
            return False
        return True
