"""Admission: how many uploads may be read, decoded and stored at once.

The broker alone decides whether a job is queued; the front end only avoids work
that the broker is bound to refuse. From the broker's last ``queue_size`` and
``queue_max`` and the uploads admitted here but not yet answered by the broker
(``pending``), an upload is

* admitted when the queue would still have room after every pending job;
* held (its body unread, so it costs nothing but a socket) while pending jobs
  may fill the queue, until one of them is answered;
* checked with one ``room`` request when nothing is pending and the queue was
  full at the last answer: the queue may have drained since.

In a burst this keeps the uploads the queue has room for from waiting behind the
reading and decoding of hundreds that will be refused, and the excess is refused
for the price of a shared round trip. The broker still refuses at ``submit``
when another front end filled the queue first.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

#: What to do with an upload: see :func:`decide`.
Decision = Literal["admit", "wait", "ask"]

#: Uploads admitted at once before any broker answer gave the queue's size (a few,
#: so that one slow client cannot hold the first uploads after a start).
UNKNOWN_ROOM = 4

#: Longest an upload is held without news of the pending ones (a photo that takes
#: long to decode) before the broker is asked instead: the broker still arbitrates,
#: so asking early costs work, never correctness.
HOLD_LIMIT_S = 5.0


@dataclass
class QueueView:
    """The queue as the broker last described it (None: no answer yet)."""

    size: int | None = None
    limit: int | None = None

    def note(self, reply: dict[str, Any]) -> None:
        """Update from a ``submitted`` or ``room`` reply."""
        size, limit = reply.get("queue_size"), reply.get("queue_max")
        if isinstance(size, int) and isinstance(limit, int):
            self.size, self.limit = size, limit
            if reply.get("outcome") == "queue_full" or reply.get("open") is False:
                # The broker's word over its figures (it also closes while stopping).
                self.size = max(size, limit)


def decide(view: QueueView, pending: int) -> Decision:
    """The rule: admit while the queue has room for every pending job and this one."""
    if view.size is None or view.limit is None:
        return "admit" if pending < UNKNOWN_ROOM else "wait"
    if view.size + pending < view.limit:
        return "admit"
    return "wait" if pending else "ask"


class QueueFull(Exception):
    """The broker said the queue has no room; ``reply`` is its ``room`` answer."""

    def __init__(self, reply: dict[str, Any]) -> None:
        super().__init__("queue full")
        self.reply = reply


class Admission:
    """The rule of :func:`decide` for one front end's uploads.

    ``ask_room`` is the broker's ``room`` request; its errors (the broker is
    unavailable) pass to the caller of :meth:`enter`.
    """

    def __init__(self, ask_room: Callable[[], Awaitable[dict[str, Any]]],
                 hold_limit_s: float = HOLD_LIMIT_S) -> None:
        self._ask_room = ask_room
        self.hold_limit_s = hold_limit_s
        self.view = QueueView()
        self.pending = 0
        self._change: asyncio.Future[bool] | None = None
        self._hold_timer: asyncio.TimerHandle | None = None
        self._asking: asyncio.Future[dict[str, Any]] | None = None

    async def enter(self) -> None:
        """Wait until this upload may go on, then count it as pending.

        Raises :class:`QueueFull` when the broker says there is no room. Every
        successful ``enter`` must be followed by one :meth:`leave`.
        """
        while True:
            decision = decide(self.view, self.pending)
            if decision == "admit":
                break
            held_too_long = False
            if decision == "wait":
                if await self._next_change():
                    continue
                held_too_long = True
            reply = await self._room()
            if reply.get("open") is False:
                raise QueueFull(reply)
            # Open: go on, unless uploads admitted on the same answer took the room.
            if held_too_long or decide(self.view, self.pending) != "wait":
                break
        self.pending += 1

    def leave(self, reply: dict[str, Any] | None = None) -> None:
        """An admitted upload is done; ``reply`` is the broker's answer to it, if any."""
        self.pending -= 1
        if reply is not None:
            self.view.note(reply)
        self._wake()

    async def _room(self) -> dict[str, Any]:
        """One ``room`` request shared by every upload that asks at the same time."""
        if self._asking is None:
            self._asking = asyncio.ensure_future(self._ask_room())
            self._asking.add_done_callback(self._asked)
        return await asyncio.shield(self._asking)

    def _asked(self, future: asyncio.Future[dict[str, Any]]) -> None:
        self._asking = None
        if not future.cancelled() and future.exception() is None:
            self.view.note(future.result())
            self._wake()

    async def _next_change(self) -> bool:
        """Wait for a pending upload to finish: False if none did within the hold limit.

        Every upload held at once shares one future and one timer (a burst holds
        hundreds; a task and a timer each would cost more than the rest of the hold)."""
        if self._change is None:
            loop = asyncio.get_running_loop()
            self._change = loop.create_future()
            self._hold_timer = loop.call_later(self.hold_limit_s, self._end_change, False)
        return await asyncio.shield(self._change)

    def _wake(self) -> None:
        self._end_change(True)

    def _end_change(self, changed: bool) -> None:
        """Wake every held upload once; those held after this wait for the next change."""
        change, self._change = self._change, None
        if self._hold_timer is not None:
            self._hold_timer.cancel()
            self._hold_timer = None
        if change is not None and not change.done():
            change.set_result(changed)
