"""The broker core's journal and file storage, in memory (for the core's tests and
:class:`tests.support.stub_broker.StubBroker`)."""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from broker.files import StorageError
from broker.journal import JournalError
from common import wire

#: Default TEMP_FOLDER of the in-memory storage (nothing is written there).
ROOT = "/srv/tmp"

Record = dict[str, Any]


class MemoryStorage:
    """The core's file access as dicts, under a pretend TEMP_FOLDER ``root``.

    ``images`` holds photo bytes by path (what an inline worker is sent);
    ``stored`` and ``deleted`` record what the core wrote and removed;
    ``fail_store = True`` makes storing masks fail as a full disk would.
    """

    def __init__(self, root: str | Path = ROOT) -> None:
        self.root = os.path.realpath(root)   # as TempStorage resolves TEMP_FOLDER
        self.images: dict[str, bytes] = {}
        self.stored: dict[str, dict[str, bytes]] = {}
        self.deleted: list[str] = []
        self.fail_store = False

    def owns(self, path: str) -> bool:
        return isinstance(path, str) and path.startswith(self.root + "/") and ".." not in path

    def store_masks(self, job_id: str, masks: Mapping[str, bytes]) -> dict[str, str]:
        if self.fail_store:
            raise StorageError("No space left on device")
        self.stored[job_id] = dict(masks)
        return {name: f"{self.root}/jobs/{job_id}/{name}.png" for name in masks}

    def read_image(self, path: str) -> bytes | None:
        return self.images.get(path)

    def delete_input(self, path: str) -> None:
        self.deleted.append(path)


class MemoryJournal:
    """The journal as a list of deep-copied records; ``fail = True`` simulates a full
    disk. Callable, so it can be handed to the core as its ``journal``."""

    def __init__(self) -> None:
        self.records: list[Record] = []
        self.fail = False
        self.appended = 0
        self.path = "<memory>"   #: named in replay errors

    def append(self, record: Record) -> None:
        if self.fail:
            raise JournalError("No space left on device")
        self.records.append(copy.deepcopy(record))
        self.appended += 1

    __call__ = append

    def open(self) -> list[Record]:
        """The records to replay (the real journal reads them from its file)."""
        return copy.deepcopy(self.records)

    def compact(self, snapshot: Record) -> None:
        self.records = [copy.deepcopy(snapshot)]

    def stats(self) -> dict[str, Any]:
        """The ``journal`` figures of the broker's stats (every record is durable at once)."""
        return {"records": self.appended, "fsyncs": self.appended,
                "bytes": sum(len(wire.pack(r)) for r in self.records), "group_commit": False}
