"""A broker for tests: the real :class:`broker.state.BrokerCore` behind real sockets.

Like dramatiq's ``StubBroker``, it is the production logic with the slow or
durable parts swapped out: the journal and the files are in memory
(:mod:`tests.support.memory_stores`; ``on_disk=True`` takes the real
:class:`broker.files.TempStorage`), and one thread serves the three ROUTER
sockets the real server binds (front end, workers, uploader) on free loopback
ports. Every decision (accept or refuse, FIFO dispatch, retries, hand-off) is
the core's, so no test re-implements the protocol.

Faults are scripted, not simulated by a second implementation:

- :meth:`StubBroker.pause` / :meth:`StubBroker.resume`: a hung broker. Frames
  are still received and recorded, but the core sees none of them, nothing is
  sent and no heartbeat goes out; on resume the core handles the held frames
  in order.
- :meth:`StubBroker.down` / :meth:`StubBroker.up`: a crash and a restart. The
  sockets close; ``up()`` rebuilds the core from the journal (as the real
  start-up replays it) and binds the same ports again.
- :meth:`StubBroker.advance`: time passes (the core's clock jumps ahead).
- :meth:`StubBroker.send`: one raw frame the core would never send (a second
  job to a busy worker, a malformed hand-off).

Peers the test does not run as processes are *stub peers*: in-process workers
(:meth:`StubBroker.add_worker`, jobs held until :meth:`StubBroker.finish` or
:meth:`StubBroker.fail`) and an uploader (:meth:`StubBroker.add_uploader`, which
acknowledges and delivers at once). They talk to the core in the wire protocol,
without a socket.

This module is the only place the tests drive a core from sockets: what it
uses of ``broker`` is the core's constructor, the journal replay, and the
calls :mod:`broker.server` makes.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Self, cast

import zmq

from broker.files import TempStorage
from broker.journal import Journal, restore_book
from broker.protocol import FRONT, UPLOADER, WORKERS, Out
from broker.state import BrokerCore
from common import wire
from common.config import BrokerSettings, QueueSettings
from tests.support.memory_stores import ROOT, MemoryJournal, MemoryStorage
from tests.support.procs import free_port, wait_for

__all__ = ["FRONT", "MASKS", "PNG", "ROOT", "UPLOADER", "WORKERS", "StubBroker"]

#: A mask as good as any to the broker (it checks the PNG signature only).
PNG = b"\x89PNG\r\n\x1a\n" + b"rest"

#: The masks a stub worker returns unless told otherwise.
MASKS = {wire.UPPER: PNG, wire.LOWER: PNG}

#: Milliseconds the broker thread waits on its sockets per turn.
POLL_MS = 10

#: Frames taken from one socket per turn, as the real server does.
BATCH = 200

#: Seconds a rebind waits for the closed socket's port to be free again.
REBIND_S = 5.0

#: Routing ids of the stub peers; real ROUTER ids start with a NUL byte.
FRONT_PEER = b"stub:front"
UPLOADER_PEER = b"stub:uploader"
WORKER_PEER = b"stub:worker:"

Message = dict[str, Any]


class _StubWorker:
    """A worker inside the stub: it holds each job it is sent until the test decides."""

    def __init__(self, name: str, takes_jobs: bool, info: Message) -> None:
        self.name, self.takes_jobs = name, takes_jobs
        self.peer = WORKER_PEER + name.encode()
        self.info = {"id": name, "host": "stub", "pid": 0, "index": 0, "engine": "schp",
                     "model_loaded": True, "device": "cpu", "inline_images": False, **info}
        self.holding: Message | None = None   #: the job it was sent and has not finished

    def hello(self, kind: str, leaving: bool = False) -> bytes:
        busy = self.holding is not None or not self.takes_jobs or leaving
        return wire.encode(kind, worker={**self.info, "busy": busy,
                                         "job_id": self.holding and self.holding["job_id"]})


class StubBroker:
    """See the module docstring. Use it as a context manager, or :meth:`start` and
    :meth:`close`. Every method may be called from any thread.

    ``root`` is the TEMP_FOLDER the core accepts photo paths under; ``queue``
    overrides :class:`common.config.QueueSettings` fields (``max_size=2``).
    """

    def __init__(self, root: str | Path = ROOT, *, on_disk: bool = False,
                 heartbeat_s: float = 0.2, **queue: Any) -> None:
        self.root = os.path.realpath(root)
        self.journal = MemoryJournal()
        self.storage: Any = TempStorage(Path(root)) if on_disk else MemoryStorage(root)
        self.queue_cfg = QueueSettings(**queue)
        self.broker_cfg = BrokerSettings(heartbeat_interval_s=heartbeat_s)
        self.ports = {channel: free_port() for channel in (FRONT, WORKERS, UPLOADER)}
        self._lock = threading.RLock()
        self._arrived = threading.Condition(self._lock)
        self._offset = 0.0   #: seconds added to the wall clock (see :meth:`advance`)
        self._workers: dict[bytes, _StubWorker] = {}
        self._uploader = False
        self._received: dict[str, list[tuple[bytes, Message]]] = {c: [] for c in self.ports}
        self._cursors = dict.fromkeys(self.ports, 0)
        self._outbox: list[Out] = []
        self._held: list[tuple[str, bytes, bytes]] = []
        self._paused = False
        self._want_up = True
        self._is_up = threading.Event()
        self._is_down = threading.Event()
        self._stop = threading.Event()
        self._req = itertools.count(1)
        self.core = self._new_core()
        self._thread = threading.Thread(target=self._run, name="stub-broker", daemon=True)

    # -- endpoints and lifecycle ----------------------------------------
    @property
    def front_endpoint(self) -> str:
        return f"tcp://127.0.0.1:{self.ports[FRONT]}"

    @property
    def worker_endpoint(self) -> str:
        return f"tcp://127.0.0.1:{self.ports[WORKERS]}"

    @property
    def uploader_endpoint(self) -> str:
        return f"tcp://127.0.0.1:{self.ports[UPLOADER]}"

    def start(self) -> Self:
        """Bind the sockets and serve from a background thread."""
        self._thread.start()
        if not self._is_up.wait(REBIND_S + 5):
            raise RuntimeError("the stub broker did not bind")
        return self

    def close(self) -> None:
        if self._thread.is_alive():
            self._stop.set()
            self._thread.join(10)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- faults -----------------------------------------------------------
    def pause(self) -> None:
        """Hang: record frames but handle none, send nothing, no heartbeats."""
        with self._lock:
            self._paused = True

    def resume(self) -> None:
        """Stop hanging: the core handles every frame held meanwhile, in order."""
        with self._lock:
            self._paused = False
            held, self._held = self._held, []
            for channel, peer, frame in held:
                self._feed(channel, peer, frame)

    def down(self) -> None:
        """Crash: close every socket (unsent frames are lost). Returns once closed."""
        with self._lock:
            self._want_up = False
            self._is_down.clear()
        if not self._is_down.wait(10):
            raise RuntimeError("the stub broker did not close its sockets")

    def up(self) -> None:
        """Restart after :meth:`down`: replay the journal into a fresh core, bind the same
        ports again, and let the stub peers announce themselves as after any restart."""
        with self._lock:
            self._outbox.clear()
            self._held.clear()
            self.core = self._new_core()
            for worker in self._workers.values():
                worker.holding = None   # its job was recovered to the queue by the replay
                self._feed(WORKERS, worker.peer, worker.hello("ready"))
            if self._uploader:
                self._feed(UPLOADER, UPLOADER_PEER, wire.encode("ready", counters={}))
            self._is_up.clear()
            self._want_up = True
        if not self._is_up.wait(REBIND_S + 5):
            raise RuntimeError("the stub broker did not bind again")

    def advance(self, seconds: float) -> None:
        """Move the core's clock ``seconds`` ahead (stub peers stay alive), then tick."""
        with self._lock:
            self._offset += seconds
            self._beat()

    def send(self, channel: str, msg_type: str, peer: bytes | None = None,
             **fields: Any) -> None:
        """Send one raw frame on ``channel`` to ``peer`` (default: the peer heard from
        last there), bypassing the core."""
        with self._lock:
            if peer is None:
                peer = self._received[channel][-1][0]
            self._outbox.append(Out(channel, peer, wire.encode(msg_type, **fields)))

    # -- what peers sent --------------------------------------------------
    def messages(self, channel: str, msg_type: str | None = None,
                 job_id: str | None = None) -> list[Message]:
        """Every message received on ``channel`` so far (paused or not), oldest first."""
        with self._lock:
            return [m for _, m in self._received[channel]
                    if (msg_type is None or m["type"] == msg_type)
                    and (job_id is None or m.get("job_id") == job_id)]

    def next_message(self, channel: str, timeout: float = 10.0,
                     skip: tuple[str, ...] = ("heartbeat",)) -> tuple[bytes, Message]:
        """The next message on ``channel`` after the last one this returned (types in
        ``skip`` passed over), with its sender's routing id."""
        deadline = time.monotonic() + timeout
        with self._arrived:
            while True:
                seen = self._received[channel]
                while self._cursors[channel] < len(seen):
                    peer, msg = seen[self._cursors[channel]]
                    self._cursors[channel] += 1
                    if msg["type"] not in skip:
                        return peer, msg
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no message on {channel} within {timeout}s")
                self._arrived.wait(left)

    def wait(self, predicate: Callable[[], Any], timeout: float = 15.0,
             what: str = "stub broker condition") -> None:
        wait_for(lambda: bool(predicate()), timeout, what=what)

    # -- requests, as the front end makes them ----------------------------
    def submit(self, job_id: str, path: str | None = None, image: bytes | None = None,
               user_id: str = "user-1") -> Message:
        """Submit a job (photo at ``path``, default ``<root>/<job_id>.jpg``; ``image``
        is what the in-memory storage holds for it); returns the ``submitted`` reply."""
        path = path or f"{self.root}/{job_id}.jpg"
        if image is not None:
            self.storage.images[path] = image
        return self._ask("submit", job=wire.make_job(job_id, user_id, "qwen", path, self._now()))

    def fill_queue(self) -> None:
        """Submit filler jobs until the queue is full."""
        number = itertools.count()
        while self._ask("room")["open"]:
            self.submit(f"filler-{next(number)}")

    def record(self, job_id: str) -> Message | None:
        """The broker's record of ``job_id`` (what GET /jobs/{job_id} passes on)."""
        return self._ask("job", job_id=job_id)["record"]

    def stats(self) -> Message:
        """The broker's ``stats`` map."""
        return self._ask("stats")["stats"]

    # -- stub peers -------------------------------------------------------
    def add_worker(self, name: str = "w0", takes_jobs: bool = True, **info: Any) -> None:
        """A worker joins (``info`` overrides its WorkerInfo: ``engine``, ``model_loaded``,
        ``precision``...); a known ``name`` announces itself again with the new info. One
        that does not take jobs is connected but never asks for work (jobs stay queued)."""
        with self._lock:
            worker = _StubWorker(name, takes_jobs, info)
            old = self._workers.get(worker.peer)
            if old is not None:
                worker.holding = old.holding
            self._workers[worker.peer] = worker
            self._feed(WORKERS, worker.peer, worker.hello("ready" if takes_jobs else "heartbeat"))

    def remove_worker(self, name: str) -> None:
        """The worker says a last (busy) heartbeat, then leaves (``disconnect``)."""
        with self._lock:
            worker = self._workers.pop(WORKER_PEER + name.encode())
            self._feed(WORKERS, worker.peer, worker.hello("heartbeat", leaving=True))
            self._feed(WORKERS, worker.peer, wire.encode("disconnect"))

    def finish(self, job_id: str, masks: Mapping[str, bytes] | None = None) -> None:
        """The stub worker holding ``job_id`` returns ``masks``, then asks for work."""
        with self._lock:
            worker, job = self._holder(job_id)
            self._feed(WORKERS, worker.peer, wire.encode(
                "result", job_id=job_id, attempt=job["attempt"], masks=dict(masks or MASKS),
                engine=worker.info["engine"], timings={}))
            self._feed(WORKERS, worker.peer, worker.hello("ready"))

    def fail(self, job_id: str, reason: str, retryable: bool = False,
             detail: str | None = None, leave: bool = False) -> None:
        """The stub worker holding ``job_id`` reports a failure, then asks for work
        (or, with ``leave``, disconnects, so a requeued job goes to another worker)."""
        with self._lock:
            worker, job = self._holder(job_id)
            self._feed(WORKERS, worker.peer, wire.encode(
                "failed", job_id=job_id, attempt=job["attempt"], reason=reason,
                detail=detail, retryable=retryable))
            if leave:
                self.remove_worker(worker.name)
            else:
                self._feed(WORKERS, worker.peer, worker.hello("ready"))

    def hand_off(self, job: Message, masks: Mapping[str, str]) -> None:
        """Take ``job`` through the core to the uploader: submitted, run by a stub worker
        that returns the bytes of the files ``masks`` names, stored, handed off."""
        with self._lock:
            if not any(w.takes_jobs for w in self._workers.values()):
                self.add_worker("stub-worker")
            reply = self.submit(job["job_id"], job["image_path"], user_id=job["user_id"])
            assert reply["outcome"] == "accepted", reply
            self.finish(job["job_id"], {name: Path(path).read_bytes()
                                        for name, path in masks.items()})

    def add_uploader(self) -> None:
        """An uploader connects; it acknowledges each delivery and reports it ``done``."""
        with self._lock:
            self._uploader = True
            self._feed(UPLOADER, UPLOADER_PEER, wire.encode("ready", counters={}))

    def _holder(self, job_id: str) -> tuple[_StubWorker, Message]:
        for worker in self._workers.values():
            if worker.holding is not None and worker.holding["job_id"] == job_id:
                job, worker.holding = worker.holding, None
                return worker, job
        raise AssertionError(f"no stub worker holds {job_id}")

    # -- the core ---------------------------------------------------------
    def _now(self) -> float:
        return time.time() + self._offset

    def _new_core(self) -> BrokerCore:
        # restore_book reads any journal with open() and compact(), as this one has
        book, _ = restore_book(cast(Journal, self.journal), self.queue_cfg.remember_finished)
        return BrokerCore(self.queue_cfg, self.broker_cfg, book, self.journal, self.storage,
                          started_at=self._now(), journal_stats=self.journal.stats)

    def _ask(self, msg_type: str, **fields: Any) -> Message:
        """A front-end request from the stub's own front end; returns the reply."""
        with self._lock:
            outs = self.core.handle_front(FRONT_PEER, wire.encode(msg_type, req=next(self._req),
                                                                  **fields), self._now())
            [reply] = [wire.decode(o.frame) for o in outs if o.peer == FRONT_PEER]
            self._route([o for o in outs if o.peer != FRONT_PEER])
            return reply

    def _feed(self, channel: str, peer: bytes, frame: bytes) -> None:
        """Hand one frame to the core, as the server's loop does, and route the output."""
        handler = {FRONT: self.core.handle_front, WORKERS: self.core.handle_worker,
                   UPLOADER: self.core.handle_uploader}[channel]
        self._route(handler(peer, frame, self._now()))

    def _route(self, outs: list[Out]) -> None:
        """Frames for stub peers are answered at once; the rest wait for the socket."""
        for out in outs:
            worker = self._workers.get(out.peer)
            if worker is not None:
                self._to_worker(worker, wire.decode(out.frame))
            elif out.peer == UPLOADER_PEER:
                self._to_uploader(wire.decode(out.frame))
            else:
                self._outbox.append(out)

    def _to_worker(self, worker: _StubWorker, msg: Message) -> None:
        if msg["type"] == "job":
            worker.holding = msg["job"]

    def _to_uploader(self, msg: Message) -> None:
        if msg["type"] == "deliver":
            job_id = msg["job"]["job_id"]
            self._feed(UPLOADER, UPLOADER_PEER, wire.encode("ack", job_id=job_id))
            self._feed(UPLOADER, UPLOADER_PEER, wire.encode("state", job_id=job_id,
                                                            state="done"))

    def _beat(self) -> None:
        """One heartbeat round: stub peers beat, the core beats and ticks."""
        for worker in list(self._workers.values()):
            self._feed(WORKERS, worker.peer, worker.hello("heartbeat"))
        if self._uploader:
            self._feed(UPLOADER, UPLOADER_PEER, wire.encode("heartbeat", counters={}))
        self._outbox.extend(self.core.heartbeats())
        self._route(self.core.tick(self._now()))

    # -- the socket thread ------------------------------------------------
    def _run(self) -> None:
        ctx = zmq.Context()
        sockets: dict[str, zmq.Socket] = {}
        poller = zmq.Poller()
        next_beat = time.monotonic()
        try:
            while not self._stop.is_set():
                if self._sync_sockets(ctx, sockets):
                    poller = zmq.Poller()
                    for sock in sockets.values():
                        poller.register(sock, zmq.POLLIN)
                if not sockets:
                    time.sleep(POLL_MS / 1000)
                    continue
                ready = dict(poller.poll(POLL_MS))
                for channel, sock in sockets.items():
                    if sock in ready:
                        self._drain(channel, sock)
                with self._lock:
                    if not self._paused and time.monotonic() >= next_beat:
                        self._beat()
                        next_beat = time.monotonic() + self.broker_cfg.heartbeat_interval_s
                    self._send(sockets)
        finally:
            for sock in sockets.values():
                sock.close(0)
            ctx.term()

    def _sync_sockets(self, ctx: zmq.Context, sockets: dict[str, zmq.Socket]) -> bool:
        """Bind or close the sockets as :meth:`down` / :meth:`up` asked; True on a change."""
        with self._lock:
            want_up = self._want_up
        if want_up and not sockets:
            for channel, port in self.ports.items():
                sockets[channel] = _bind(ctx, port, mandatory=channel != FRONT)
            self._is_up.set()
            return True
        if not want_up and sockets:
            for sock in sockets.values():
                sock.close(0)
            sockets.clear()
            self._is_down.set()
            return True
        return False

    def _drain(self, channel: str, sock: zmq.Socket) -> None:
        for _ in range(BATCH):
            try:
                frames = sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            if len(frames) == 2:
                self._arrive(channel, frames[0], frames[1])

    def _arrive(self, channel: str, peer: bytes, frame: bytes) -> None:
        with self._arrived:
            try:
                self._received[channel].append((peer, wire.decode(frame)))
            except wire.WireError:
                pass  # the core logs it
            self._arrived.notify_all()
            if self._paused:
                self._held.append((channel, peer, frame))
            else:
                self._feed(channel, peer, frame)

    def _send(self, sockets: dict[str, zmq.Socket]) -> None:
        """Send what is waiting (not while paused); a dispatch that cannot be sent is
        reported to the core, as the real server does."""
        while self._outbox and not self._paused:
            outs, self._outbox = self._outbox, []
            for out in outs:
                try:
                    sockets[out.channel].send_multipart([out.peer, out.frame], zmq.NOBLOCK)
                except zmq.ZMQError:
                    if out.job_id is not None:
                        self._route(self.core.undeliverable(out, self._now()))


def _bind(ctx: zmq.Context, port: int, mandatory: bool) -> zmq.Socket:
    """A ROUTER bound on ``port``, retried while a just-closed socket still holds it."""
    deadline = time.monotonic() + REBIND_S
    while True:
        sock = ctx.socket(zmq.ROUTER)
        sock.linger = 0
        sock.setsockopt(zmq.ROUTER_MANDATORY, int(mandatory))
        try:
            sock.bind(f"tcp://127.0.0.1:{port}")
            return sock
        except zmq.ZMQError:
            sock.close(0)
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
