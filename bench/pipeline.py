"""Throughput of the whole service: real processes, N photos submitted at once.

    venv/bin/python bench/pipeline.py [--jobs 20] [--workers 1 2] [--photo P]
                                      [--engine parser|schp] [--weights FILE]

For each worker count it starts the service (broker, uploader, workers, front
end, stand-in asset service) under a temporary directory, submits ``--jobs``
photos as fast as the front end accepts them, and prints:

* jobs/s from the first submission to the last delivery;
* per-job time in a worker (dispatch -> masks stored) against the engine's bare
  time for the same photo measured in this process (the gap is decode, PNG
  encoding, zmq and file hand-offs);
* end-to-end latency (submission -> delivered) p50/p99;
* accept latency p50/p99 of POST /process while the workers are busy.

Figures, not assertions: this machine is shared and noisy.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common.config import load_settings  # noqa: E402
from common.photo import decode_rgb  # noqa: E402
from segworker.engines import build_engine  # noqa: E402
from segworker.pipeline import process_photo  # noqa: E402
from tests.support.service import ServiceTree, person_photo  # noqa: E402


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def bare_engine_ms(photo: bytes, env: dict[str, str], runs: int = 5) -> float:
    """Median ms of decode + engine + refine + encode in this process, 1 thread."""
    import torch
    torch.set_num_threads(1)
    settings = load_settings(environ=env)
    engine = build_engine(settings)
    rgb = decode_rgb(photo, settings.server.max_image_pixels)
    times = []
    for _ in range(runs + 1):
        started = time.perf_counter()
        process_photo(engine, rgb, settings.segmentation.refine, False)
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times[1:])


def run_once(workers: int, jobs: int, photo: bytes, env: dict[str, str]) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="bench-pipeline-") as tmp:
        tree = ServiceTree(Path(tmp), workers=workers, extra_env=env)
        try:
            tree.start_all()
            job_ids = [f"bench-{workers}-{i:03d}" for i in range(jobs)]
            accept_ms = []
            first = time.time()
            for job_id in job_ids:
                started = time.perf_counter()
                resp = tree.post_photo(job_id, photo)
                accept_ms.append((time.perf_counter() - started) * 1000)
                assert resp.status_code == 202, resp.text
            tree.wait_delivered(job_ids, timeout=30 + jobs * 20)
            records = [tree.wait_state(j, ("done",)) for j in job_ids]
            last = max(r["finished_at"] for r in records)
            in_worker = [(r["processed_at"] - r["started_at"]) * 1000 for r in records]
            end_to_end = [(r["finished_at"] - r["submitted_at"]) * 1000 for r in records]
            busy_accepts = accept_ms[workers:]  # once every worker has a job
            return {
                "jobs_per_s": jobs / (last - first),
                "worker_ms_median": statistics.median(in_worker),
                "e2e_p50_ms": percentile(end_to_end, 0.5),
                "e2e_p99_ms": percentile(end_to_end, 0.99),
                "accept_p50_ms": percentile(busy_accepts, 0.5),
                "accept_p99_ms": percentile(busy_accepts, 0.99),
            }
        finally:
            tree.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=20)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--photo", type=Path, help="JPEG/PNG (default: a sample photo of a person)")
    parser.add_argument("--engine", choices=("parser", "schp"), default="parser")
    parser.add_argument("--weights", help="SCHP checkpoint (with --engine schp)")
    args = parser.parse_args()
    photo = args.photo.read_bytes() if args.photo else person_photo()
    env = {"SEGMENTATION_ENGINE": args.engine}
    if args.weights:
        env["SCHP_WEIGHTS"] = str(Path(args.weights).resolve())
    bare = bare_engine_ms(photo, env)
    print(f"engine {args.engine}: bare time per photo (decode+engine+refine+encode, 1 thread): "
          f"{bare:.0f} ms")
    print(f"{'workers':>7} {'jobs/s':>7} {'in-worker ms':>13} {'e2e p50':>8} {'e2e p99':>8} "
          f"{'accept p50':>11} {'accept p99':>11}")
    for workers in args.workers:
        r = run_once(workers, args.jobs, photo, env)
        print(f"{workers:>7} {r['jobs_per_s']:>7.2f} {r['worker_ms_median']:>13.0f} "
              f"{r['e2e_p50_ms']:>8.0f} {r['e2e_p99_ms']:>8.0f} {r['accept_p50_ms']:>11.1f} "
              f"{r['accept_p99_ms']:>11.1f}")


if __name__ == "__main__":
    main()
