"""Throughput of the whole service: real processes, N photos submitted at once.

    venv/bin/python bench/pipeline.py [--jobs 20] [--workers 1 2] [--photo P]
                                      [--engine parser|schp] [--weights FILE]
                                      [--precision auto|fp32|bf16] [--backend auto|openvino|eager]

With ``--engine schp`` and no ``--weights`` it writes a random-weight ATR
checkpoint in the official 2020 format (267 MB, in the temporary folder; the
upper-clothes bias is raised so the random network finds a "person"). The
compiled model is built once here (the bare-engine measurement) and each
service tree starts with that cache entry, as a restarted worker would.
The default photo is the astronaut sample scaled to 768x1024.

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
import io
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common.config import load_settings
from common.photo import decode_rgb
from segworker.engines import build_engine
from segworker.pipeline import process_photo
from tests.support.service import ServiceTree, person_photo


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


#: Size of the default photo, (width, height) pixels.
PHOTO_SIZE = (768, 1024)

#: Where the SCHP model cache lives under STATE_DIR (segworker.schp.engine.CACHE_SUBDIR).
CACHE_SUBDIR = Path("schp") / "compiled"


def bare_engine_ms(photo: bytes, env: dict[str, str], runs: int = 5) -> tuple[float, dict]:
    """Median ms of decode + engine + refine + encode in this process, 1 thread,
    and the engine's description."""
    import torch
    torch.set_num_threads(1)
    settings = load_settings(environ=env)
    engine = build_engine(settings)
    times = []
    for _ in range(runs + 1):
        started = time.perf_counter()
        rgb = decode_rgb(photo, settings.server.max_image_pixels)
        process_photo(engine, rgb, settings.segmentation.refine, False)
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times[1:]), engine.describe()


def default_photo() -> bytes:
    """The sample person photo scaled to :data:`PHOTO_SIZE` (JPEG)."""
    from PIL import Image
    img = Image.open(io.BytesIO(person_photo())).convert("RGB").resize(PHOTO_SIZE)
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=92)
    return buf.getvalue()


def random_checkpoint(folder: Path) -> Path:
    """A random-weight ATR checkpoint in the official 2020 format, with foreground."""
    from tests.faults.kit import save_schp_checkpoint
    return save_schp_checkpoint(folder)


def seed_cache(source_state: Path, tree_state: Path) -> None:
    """Hard-link the compiled-model cache into a fresh tree's STATE_DIR."""
    src = source_state / CACHE_SUBDIR
    if not src.is_dir():
        return
    for entry in src.iterdir():
        dst = tree_state / CACHE_SUBDIR / entry.name
        dst.mkdir(parents=True, exist_ok=True)
        for f in entry.iterdir():
            try:
                os.link(f, dst / f.name)
            except OSError:
                shutil.copy2(f, dst / f.name)


def run_once(workers: int, jobs: int, photo: bytes, env: dict[str, str],
             cache_state: Path | None) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="bench-pipeline-") as tmp:
        tree = ServiceTree(Path(tmp), workers=workers, extra_env=env)
        if cache_state is not None:
            seed_cache(cache_state, Path(tmp) / "state")
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
    parser.add_argument("--photo", type=Path, help="JPEG/PNG (default: a sample photo of a "
                        "person, 768x1024)")
    parser.add_argument("--engine", choices=("parser", "schp"), default="parser")
    parser.add_argument("--weights", help="SCHP checkpoint (with --engine schp; default: a "
                        "random-weight one written here)")
    parser.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto")
    parser.add_argument("--backend", choices=("auto", "openvino", "eager"), default="auto")
    args = parser.parse_args()
    photo = args.photo.read_bytes() if args.photo else default_photo()
    with tempfile.TemporaryDirectory(prefix="bench-pipeline-schp-") as scratch:
        env = {"SEGMENTATION_ENGINE": args.engine}
        cache_state = None
        if args.engine == "schp":
            weights = Path(args.weights) if args.weights else random_checkpoint(Path(scratch))
            cache_state = Path(scratch) / "state"
            env.update({"SCHP_WEIGHTS": str(weights.resolve()), "SCHP_DEVICE": "cpu",
                        "SCHP_PRECISION": args.precision, "SCHP_BACKEND": args.backend})
        bare, facts = bare_engine_ms(photo, {**env, "STATE_DIR": str(cache_state or scratch)})
        how = (f", {facts.get('backend')} {facts.get('precision')} "
               f"({facts.get('precision_because')})" if args.engine == "schp" else "")
        print(f"engine {args.engine}{how}: bare time per photo (decode+engine+refine+encode, "
              f"1 thread): {bare:.0f} ms")
        print(f"{'workers':>7} {'jobs/s':>7} {'in-worker ms':>13} {'/ bare':>7} {'e2e p50':>8} "
              f"{'e2e p99':>8} {'accept p50':>11} {'accept p99':>11}")
        for workers in args.workers:
            r = run_once(workers, args.jobs, photo, env, cache_state)
            print(f"{workers:>7} {r['jobs_per_s']:>7.2f} {r['worker_ms_median']:>13.0f} "
                  f"{r['worker_ms_median'] / bare:>7.2f} {r['e2e_p50_ms']:>8.0f} "
                  f"{r['e2e_p99_ms']:>8.0f} {r['accept_p50_ms']:>11.1f} "
                  f"{r['accept_p99_ms']:>11.1f}", flush=True)


if __name__ == "__main__":
    main()
