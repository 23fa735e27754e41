"""A broker core on the in-memory journal and storage of :mod:`tests.support.stub_broker`,
and message helpers."""

from __future__ import annotations

from typing import Any

from broker.jobs import JobBook
from broker.protocol import FRONT, UPLOADER, WORKERS, Out
from broker.state import BrokerCore
from common import wire
from common.config import BrokerSettings, QueueSettings
from tests.support.memory_stores import ROOT, MemoryJournal, MemoryStorage
from tests.support.stub_broker import MASKS

__all__ = ["MASKS", "ROOT", "Harness", "delivered", "dispatched", "reply"]


class Harness:
    """A core with fakes, plus one-line helpers to drive it as peers would."""

    def __init__(self, book: JobBook | None = None, journal: Any = None, **queue: Any) -> None:
        self.queue_cfg = QueueSettings(**{"max_size": 10, "job_deadline_s": 30.0,
                                          "max_attempts": 3, "remember_finished": 100, **queue})
        self.broker_cfg = BrokerSettings(heartbeat_interval_s=1.0, heartbeat_liveness=5)
        self.journal, self.storage = journal or MemoryJournal(), MemoryStorage()
        self.book = book or JobBook(remember_finished=self.queue_cfg.remember_finished)
        self.core = BrokerCore(self.queue_cfg, self.broker_cfg, self.book, self.journal,
                               self.storage, started_at=1000.0)
        self.now = 1000.0

    def at(self, now: float) -> Harness:
        self.now = now
        return self

    def submit(self, job_id: str, user_id: str = "user-1", path: str | None = None) -> dict:
        job = wire.make_job(job_id, user_id, "qwen", path or f"{ROOT}/{job_id}.jpg", self.now)
        outs = self.core.handle_front(b"fe", wire.encode("submit", req=7, job=job), self.now)
        return reply(outs, FRONT)

    def query(self, job_id: str) -> dict | None:
        outs = self.core.handle_front(b"fe", wire.encode("job", req=1, job_id=job_id), self.now)
        return reply(outs, FRONT)["record"]

    def stats(self) -> dict:
        outs = self.core.handle_front(b"fe", wire.encode("stats", req=2), self.now)
        return reply(outs, FRONT)["stats"]

    def worker(self, name: str, kind: str = "ready", peer: bytes | None = None,
               **info: Any) -> list[Out]:
        info = {"id": name, "host": "h", "pid": 1, "index": 0, "engine": "parser",
                "model_loaded": True, "device": "cpu", "inline_images": False,
                "busy": kind != "ready", **info}
        return self.core.handle_worker(peer or name.encode(), wire.encode(kind, worker=info),
                                       self.now)

    def result(self, name: str, job_id: str, attempt: int = 0, masks: dict | None = None,
               peer: bytes | None = None) -> list[Out]:
        frame = wire.encode("result", job_id=job_id, attempt=attempt, masks=masks or MASKS,
                            engine="parser", timings={})
        return self.core.handle_worker(peer or name.encode(), frame, self.now)

    def failed(self, name: str, job_id: str, reason: str, retryable: bool,
               attempt: int = 0) -> list[Out]:
        frame = wire.encode("failed", job_id=job_id, attempt=attempt, reason=reason,
                            detail="d", retryable=retryable)
        return self.core.handle_worker(name.encode(), frame, self.now)

    def uploader(self, kind: str, peer: bytes = b"up", **fields: Any) -> list[Out]:
        return self.core.handle_uploader(peer, wire.encode(kind, **fields), self.now)


def reply(outs: list[Out], channel: str) -> dict:
    """The single message sent on ``channel`` (decoded)."""
    msgs = [wire.decode(o.frame) for o in outs if o.channel == channel]
    assert len(msgs) == 1, msgs
    return msgs[0]


def dispatched(outs: list[Out]) -> list[tuple[bytes, str]]:
    """(worker routing id, job_id) of every job sent."""
    return [(o.peer, wire.decode(o.frame)["job"]["job_id"]) for o in outs
            if o.channel == WORKERS and wire.decode(o.frame)["type"] == "job"]


def delivered(outs: list[Out]) -> list[str]:
    return [wire.decode(o.frame)["job"]["job_id"] for o in outs
            if o.channel == UPLOADER and wire.decode(o.frame)["type"] == "deliver"]
