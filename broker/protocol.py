"""What the broker core and its shell exchange: the frames it returns (:class:`Out`, one channel
per ROUTER socket) and the file system it calls (:class:`Storage`). Imports nothing from broker/."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

#: Channel names used in :class:`Out` (one per ROUTER socket).
FRONT, WORKERS, UPLOADER = "front", "workers", "uploader"


@dataclass
class Out:
    """One frame to send on ``channel`` to routing id ``peer``; ``job_id`` names the job a
    dispatch carries, for :meth:`broker.state.BrokerCore.undeliverable` when its send fails."""

    channel: str
    peer: bytes
    frame: bytes
    job_id: str | None = None


class Storage(Protocol):
    """What the core needs from the file system (see :class:`broker.files.TempStorage`)."""

    def owns(self, path: str) -> bool: ...
    def store_masks(self, job_id: str, masks: Mapping[str, bytes]) -> dict[str, str]: ...
    def read_image(self, path: str) -> bytes | None: ...
    def delete_input(self, path: str) -> None: ...
