"""How far one broker goes: the real front end, broker and uploader, N instant workers.

    venv/bin/python bench/capacity.py [--workers 1 8 32] [--jobs 400] [--concurrency 32]
                                      [--burst 200] [--burst-queue 20] [--burst-delay 0.5]
                                      [--burst-client raw tornado] [--burst-runs 1]

Each run starts the real ``python -m frontend``, ``broker`` and ``uploader`` under a
temporary directory, a fast stand-in Mask Asset Service (in this process) and N
``python -m devtools.standin_worker`` processes (the real worker loop; the "model"
answers fixed masks at once), then posts ``--jobs`` photos with ``--concurrency``
requests in flight and prints, per N:

* accepted jobs/s (202s from the first request to the last 202) and delivered
  jobs/s (first request to the last upload received);
* journal fsyncs and records per job (from the broker's ``journal`` stats);
* broker CPU ms per job (user + system, from /proc);
* p50 / p99 accept latency (request sent -> 202 read).

Then the burst: ``--burst`` uploads sent at once at a queue limit of ``--burst-queue``
with one worker taking ``--burst-delay`` s per job (a CPU SCHP-like pace), and the
p50 / p99 / max accept latency of the accepted ones (and how fast the 503s came),
sent by each ``--burst-client`` in turn: ``raw`` writes requests built beforehand over
plain sockets (as clients on other machines: little work on these shared cores),
``tornado`` uses Tornado's HTTP client (as the capacity runs do; its own CPU per
request is counted in the latency it measures).

Photos: the 512 x 512 sample photo of a person (about 80 kB JPEG). The load
generator, the receiver and the service share this machine's cores, so the figures
are a floor for the broker, not its ceiling. Figures, not assertions.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import tornado.httpclient

from tests.support import procs
from tests.support.service import SECRET, ProcessTree, person_photo

#: Ticks per second of /proc/<pid>/stat CPU times.
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] if ordered else 0.0


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


class ProcessReceiver:
    """The stand-in asset service as its own process (``devtools.asset_receiver``), so it
    neither slows the load generator nor is slowed by it; it logs one line per upload."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.log = root / "receiver.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> str:
        port = procs.free_port()
        self.proc = procs.start("devtools.asset_receiver", {}, "--port", str(port), "--out",
                                str(self.root / "received"), "--secret", SECRET,
                                log_path=self.log)
        procs.wait_for(lambda: "receiver_listening" in self._text(), 30, what="the receiver")
        return f"http://127.0.0.1:{port}/masks"

    def _text(self) -> str:
        return self.log.read_text() if self.log.exists() else ""

    def delivered_job_ids(self) -> list[str]:
        return [line.split('"job_id": "', 1)[1].split('"', 1)[0]
                for line in self._text().splitlines() if '"masks_received"' in line]

    @property
    def pid(self) -> int:
        assert self.proc is not None, "the tree starts its receiver before anything else"
        return self.proc.pid

    def stop(self) -> None:
        procs.stop(self.proc)


class Form:
    """A POST /process body, built once; only the job id changes per request."""

    def __init__(self, photo: bytes) -> None:
        self.boundary = uuid.uuid4().hex
        self.photo = photo

    def body(self, job_id: str) -> bytes:
        b = self.boundary
        parts = [f'--{b}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
                 for k, v in (("job_id", job_id), ("user_id", "bench-user"), ("provider", "qwen"))]
        parts.append(f'--{b}\r\nContent-Disposition: form-data; name="user_image"; '
                     f'filename="p.jpg"\r\nContent-Type: image/jpeg\r\n\r\n'.encode()
                     + self.photo + b"\r\n")
        return b"".join(parts) + f"--{b}--\r\n".encode()

    @property
    def content_type(self) -> str:
        return f"multipart/form-data; boundary={self.boundary}"


@dataclass
class Answer:
    job_id: str
    status: int
    sent: float       #: monotonic
    answered: float   #: monotonic

    @property
    def ms(self) -> float:
        return (self.answered - self.sent) * 1000


async def post_raw(url: str, form: Form, job_ids: list[str]) -> list[Answer]:
    """POST every job at once, each on its own connection, as clients on other
    machines would: every request's bytes are built before the clock starts and
    written in one go, so the generator's own work per request is a connect,
    one write and one read (far less than an HTTP client library's, which on
    these shared cores would be counted in the service's latency)."""
    host, port = url.removeprefix("http://").split(":")
    requests = {j: _raw_request(form, j, host) for j in job_ids}

    async def one(job_id: str) -> Answer:
        sent = time.monotonic()
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            writer.write(requests[job_id])
            status = int((await reader.readline()).split()[1])
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.decode("latin-1").partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value)
            await reader.readexactly(length)
            return Answer(job_id, status, sent, time.monotonic())
        finally:
            writer.close()

    return list(await asyncio.gather(*(one(j) for j in job_ids)))


def _raw_request(form: Form, job_id: str, host: str) -> bytes:
    body = form.body(job_id)
    head = (f"POST /process HTTP/1.1\r\nHost: {host}\r\nContent-Type: {form.content_type}\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n")
    return head.encode("latin-1") + body


async def post_all(url: str, form: Form, job_ids: list[str], concurrency: int) -> list[Answer]:
    """POST every job with at most ``concurrency`` requests in flight."""
    client = tornado.httpclient.AsyncHTTPClient(force_instance=True, max_clients=concurrency)
    answers: list[Answer] = []
    bodies = {j: form.body(j) for j in job_ids}
    sem = asyncio.Semaphore(concurrency)

    async def one(job_id: str) -> None:
        async with sem:
            sent = time.monotonic()
            resp = await client.fetch(url + "/process", method="POST", body=bodies[job_id],
                                      headers={"Content-Type": form.content_type},
                                      raise_error=False, request_timeout=120,
                                      connect_timeout=60)
            answers.append(Answer(job_id, resp.code, sent, time.monotonic()))

    await asyncio.gather(*(one(j) for j in job_ids))
    client.close()
    return answers


#: The service with its stand-in receiver as a process of its own.
Tree = ProcessTree[ProcessReceiver]


def start_service(root: Path, workers: int, delay: float, **env: str) -> Tree:
    root.mkdir(parents=True, exist_ok=True)
    tree = Tree(root, ProcessReceiver(root), workers=0,
                extra_env={"LOG_LEVEL": "WARNING", "HEARTBEAT_INTERVAL_S": "1.0", **env})
    tree.start("broker")
    tree.start("uploader")
    tree.start("frontend")
    for i in range(workers):
        _start_worker(tree, i, delay)
    tree.wait_http()
    procs.wait_for(lambda: tree.stats().get("workers") == workers, 120, interval=0.2,
                   what=f"{workers} stand-in workers")
    return tree


def _start_worker(tree: Tree, index: int, delay: float) -> None:
    name = f"standin:{index}"
    tree.procs[name] = procs.start("devtools.standin_worker", tree.env, "--index", str(index),
                                   "--delay", str(delay), log_path=tree.log_path(name))


def journal_figures(tree: Tree) -> dict[str, int]:
    return tree.stats().get("journal") or {}


def run_capacity(workers: int, jobs: int, concurrency: int, form: Form) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="bench-capacity-") as tmp:
        tree = start_service(Path(tmp), workers, 0.0, QUEUE_MAX_SIZE=str(jobs + 100))
        try:
            broker_pid = tree.procs["broker"].pid
            warm = [f"warm-{i}" for i in range(20)]
            asyncio.run(post_all(tree.url, form, warm, concurrency))
            tree.wait_delivered(warm, timeout=120)
            j0, cpu0 = journal_figures(tree), cpu_seconds(broker_pid)
            pids = {n: tree.procs[n].pid for n in ("frontend", "uploader")}
            pids["receiver"] = tree.receiver.pid
            pids["load"] = os.getpid()
            cpu_before = {n: cpu_seconds(p) for n, p in pids.items()}
            job_ids = [f"cap-{workers}-{i:05d}" for i in range(jobs)]
            first = time.monotonic()
            answers = asyncio.run(post_all(tree.url, form, job_ids, concurrency))
            accepted = [a for a in answers if a.status == 202]
            assert len(accepted) == jobs, sorted({a.status for a in answers})
            wanted = set(job_ids)
            procs.wait_for(lambda: wanted <= set(tree.receiver.delivered_job_ids()),
                           60 + jobs, interval=0.02, what="every delivery")
            delivered_at = time.monotonic()
            procs.wait_for(lambda: tree.stats().get("delivered", 0) >= jobs + len(warm),
                           60, what="the broker to record every delivery")
            j1, cpu1 = journal_figures(tree), cpu_seconds(broker_pid)
            cpu_after = {n: cpu_seconds(p) for n, p in pids.items()}
            accept_ms = [a.ms for a in accepted]
            return {
                "accepted_per_s": jobs / (max(a.answered for a in accepted) - first),
                "delivered_per_s": jobs / (delivered_at - first),
                **{f"{n}_cpu_ms": (cpu_after[n] - cpu_before[n]) * 1000 / jobs for n in pids},
                "fsyncs_per_job": (j1.get("fsyncs", 0) - j0.get("fsyncs", 0)) / jobs,
                "records_per_job": (j1.get("records", 0) - j0.get("records", 0)) / jobs,
                "broker_cpu_ms": (cpu1 - cpu0) * 1000 / jobs,
                "accept_p50": percentile(accept_ms, 0.5),
                "accept_p99": percentile(accept_ms, 0.99),
            }
        finally:
            tree.close()


def run_burst(uploads: int, queue_max: int, delay: float, form: Form,
              client: str) -> dict[str, float]:
    """The burst, sent by ``client``: ``raw`` (:func:`post_raw`) or ``tornado``
    (:func:`post_all`, Tornado's HTTP client, as the capacity runs)."""
    with tempfile.TemporaryDirectory(prefix="bench-burst-") as tmp:
        tree = start_service(Path(tmp), 1, delay, QUEUE_MAX_SIZE=str(queue_max))
        try:
            job_ids = [f"burst-{i:04d}" for i in range(uploads)]
            pids = {name: tree.procs[name].pid for name in ("frontend", "broker")}
            pids["load"] = os.getpid()
            cpu0 = {name: cpu_seconds(pid) for name, pid in pids.items()}
            started = time.monotonic()
            send = (post_raw(tree.url, form, job_ids) if client == "raw"
                    else post_all(tree.url, form, job_ids, uploads))
            answers = asyncio.run(send)
            wall = time.monotonic() - started
            cpu = {name: (cpu_seconds(pid) - cpu0[name]) * 1000 / uploads
                   for name, pid in pids.items()}
            accepted = [a.ms for a in answers if a.status == 202]
            refused = [a.ms for a in answers if a.status == 503]
            other = len(answers) - len(accepted) - len(refused)
            return {"accepted": len(accepted), "refused": len(refused), "other": other,
                    "p50": percentile(accepted, 0.5), "p99": percentile(accepted, 0.99),
                    "max": max(accepted, default=0.0),
                    "refused_p99": percentile(refused, 0.99), "wall_s": wall,
                    **{f"{name}_cpu_ms": ms for name, ms in cpu.items()}}
        finally:
            tree.close()


def print_burst(args: argparse.Namespace, client: str, b: dict[str, float]) -> None:
    print(f"burst ({client} client): {args.burst} uploads at once, queue limit "
          f"{args.burst_queue}, one worker at {args.burst_delay:g} s/job: {b['accepted']} "
          f"accepted, {b['refused']} refused (503), {b['other']} other")
    print(f"  accept latency of the accepted: p50 {b['p50']:.0f} ms, p99 {b['p99']:.0f} ms, "
          f"max {b['max']:.0f} ms; 503s answered within {b['refused_p99']:.0f} ms (p99)")
    print(f"  all {args.burst} answered in {b['wall_s']:.2f} s; CPU per upload: front end "
          f"{b['frontend_cpu_ms']:.1f} ms, broker {b['broker_cpu_ms']:.2f} ms, load "
          f"generator {b['load_cpu_ms']:.1f} ms", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--jobs", type=int, default=400)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--burst", type=int, default=200)
    parser.add_argument("--burst-queue", type=int, default=20)
    parser.add_argument("--burst-delay", type=float, default=0.5)
    parser.add_argument("--burst-client", nargs="+", choices=["raw", "tornado"],
                        default=["raw", "tornado"], help="who sends the burst (each in turn)")
    parser.add_argument("--burst-runs", type=int, default=1, help="bursts per client")
    parser.add_argument("--skip-capacity", action="store_true", help="only the burst")
    args = parser.parse_args()
    photo = person_photo()
    form = Form(photo)
    print(f"photo: {len(photo) / 1024:.0f} kB JPEG; {args.jobs} jobs per run, "
          f"{args.concurrency} requests in flight; {os.cpu_count()} cores shared by everything")
    if not args.skip_capacity:
        print(f"{'workers':>7} {'accepted/s':>10} {'delivered/s':>11} {'fsyncs/job':>10} "
              f"{'records/job':>11} {'broker CPU ms/job':>17} {'accept p50':>10} {'accept p99':>10}")
        for n in args.workers:
            r = run_capacity(n, args.jobs, args.concurrency, form)
            print(f"{n:>7} {r['accepted_per_s']:>10.1f} {r['delivered_per_s']:>11.1f} "
                  f"{r['fsyncs_per_job']:>10.2f} {r['records_per_job']:>11.2f} "
                  f"{r['broker_cpu_ms']:>17.2f} {r['accept_p50']:>8.1f}ms {r['accept_p99']:>8.1f}ms",
                  flush=True)
            print(f"{'':>7} CPU ms/job elsewhere: front end {r['frontend_cpu_ms']:.1f}, uploader "
                  f"{r['uploader_cpu_ms']:.1f}, receiver {r['receiver_cpu_ms']:.1f}, "
                  f"load generator {r['load_cpu_ms']:.1f}", flush=True)
    for _ in range(args.burst_runs):
        for client in args.burst_client:
            print_burst(args, client, run_burst(args.burst, args.burst_queue,
                                                args.burst_delay, form, client))

if __name__ == "__main__":
    main()
