"""SCHP forward speed per backend x precision x threads, as ratios to eager fp32.

Prints figures, asserts nothing. Random weights (speed does not depend on
them). Each configuration runs in a fresh subprocess so thread pools,
allocator state and peak RSS do not leak between them.

Backends: ``eager`` (the PyTorch module, channels_last; the reference),
``openvino`` (the service's compiled CPU backend, segworker.schp.runtime) and
``inductor`` (torch.compile with freezing; measured for comparison only, it
needs a C++ compiler at run time). For each: median ms per forward, the ratio
to eager fp32 at the same thread count in this run, peak RSS, label agreement
with eager fp32 (fp32 rows; random weights), the compile time of a cold start
and, at 1 thread, the start-up time of a warm one (from the on-disk cache).

    venv/bin/python bench/schp_forward.py            # 512 and 473, 1 and 2 threads
    venv/bin/python bench/schp_forward.py --quick    # 512 only, fewer repetitions
    venv/bin/python bench/schp_forward.py --backends eager openvino --threads 1

Figures on a shared machine are noisy: compare the ratios of one run.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

#: The project root (so the script runs from anywhere).
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

#: Network input side -> the dataset that uses it.
SIZE_DATASET = {512: "atr", 473: "lip"}

#: The photo size post-processing is timed on, (width, height) in pixels.
POST_PHOTO = (768, 1024)

BACKENDS = ("eager", "openvino", "inductor")
PRECISIONS = ("fp32", "bf16")


def child_forward(args: argparse.Namespace) -> dict:
    """Build one configuration in this process, time its forward, compare labels."""
    import torch

    _set_threads(args.threads[0])
    dataset = SIZE_DATASET[args.size]
    torch.manual_seed(0)
    model = _random_model(dataset)
    batch = _input(args.size)
    started = time.perf_counter()
    run, facts = _build(args, model, batch)
    run(batch)  # the first call: part of start-up for compiled backends
    facts["ready_s"] = round(time.perf_counter() - started, 2)
    times = []
    for i in range(args.warmup + args.reps):
        start = time.perf_counter()
        out = run(batch)
        if i >= args.warmup:
            times.append((time.perf_counter() - start) * 1000)
    result = {"median_ms": statistics.median(times), "min_ms": min(times),
              "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, **facts}
    if args.agreement:
        with torch.inference_mode():
            reference = model(batch)
        result["agreement"] = float((out.float().argmax(1) == reference.argmax(1)).float().mean())
    return result


def child_interleaved(args: argparse.Namespace) -> dict:
    """All backends x precisions in one process, timed in alternation (round-robin),
    so load from other processes falls on every variant alike: the fairest ratios on a
    shared machine. Compiled variants come from the caches the cold runs filled."""
    import torch

    _set_threads(args.threads[0])
    torch.manual_seed(0)
    batch = _input(args.size)
    runs = {}
    for backend in args.backends:
        for precision in PRECISIONS:
            model = _random_model(SIZE_DATASET[args.size])
            sub = argparse.Namespace(**{**vars(args), "backend": backend, "precision": precision,
                                        "cache_dir": str(Path(args.cache_dir) / _cache_name(
                                            backend, args.size, args.threads[0], precision))})
            if backend == "inductor":
                os.environ["TORCHINDUCTOR_CACHE_DIR"] = sub.cache_dir
            run, _ = _build(sub, model, batch)
            run(batch)
            runs[f"{backend} {precision}"] = run
    times: dict = {name: [] for name in runs}
    for _ in range(args.warmup + args.reps):
        for name, run in runs.items():
            start = time.perf_counter()
            run(batch)
            times[name].append((time.perf_counter() - start) * 1000)
    return {name: statistics.median(t[args.warmup:]) for name, t in times.items()}


def _cache_name(backend: str, size: int, threads: int, precision: str) -> str:
    return f"{backend}-{size}-{threads}-{precision}"


def _build(args: argparse.Namespace, model, batch):
    """A callable batch -> logits for ``args.backend`` / ``args.precision``, and facts."""
    import torch

    from segworker.schp.runtime import EagerRunner, OpenVinoRunner

    if args.backend == "eager":
        return EagerRunner(model, torch.device("cpu"), args.precision), {}
    if args.backend == "openvino":
        from segworker.schp.model_cache import ModelCache
        cache = ModelCache(Path(args.cache_dir)) if args.cache_dir else None
        runner = OpenVinoRunner(model, args.size, args.precision, cache=cache)
        return runner, {k: runner.facts[k] for k in ("compile_s", "cache_load_s", "cache")
                        if k in runner.facts}
    return _inductor(model, args.precision)


def _inductor(model, precision: str):
    """torch.compile (inductor, freezing) of the module; bf16 under autocast, as the
    eager path does it (casting the module to bf16 fails in SCHP's fp32-only ops)."""
    import contextlib

    import torch
    import torch._inductor.config as inductor_config

    inductor_config.freezing = True
    model = model.to(memory_format=torch.channels_last)
    compiled = torch.compile(model)

    def run(batch):
        autocast = (torch.autocast("cpu", dtype=torch.bfloat16) if precision == "bf16"
                    else contextlib.nullcontext())
        with torch.no_grad(), autocast:
            return compiled(batch.contiguous(memory_format=torch.channels_last)).float()

    return _timed_first(run)


def _timed_first(run):
    """Wrap ``run`` so the first call's time (inductor compiles then) is reported."""
    facts: dict = {}

    def first_then_plain(batch):
        if "compile_s" not in facts:
            t0 = time.perf_counter()
            out = run(batch)
            facts["compile_s"] = round(time.perf_counter() - t0, 2)
            return out
        return run(batch)

    return first_then_plain, facts


def _random_model(dataset: str):
    from segworker.schp.network import SchpNet
    return SchpNet({"atr": 18, "lip": 20}[dataset]).eval()


def _input(size: int):
    import numpy as np

    from segworker.schp.transforms import preprocess
    rng = np.random.default_rng(0)
    return preprocess(rng.integers(0, 256, (1024, 768, 3), dtype=np.uint8), size)[0]


def child_post(args: argparse.Namespace) -> dict:
    """Time pre- and post-processing of a 768x1024 photo at 1 thread."""
    import numpy as np
    import torch

    from segworker.schp.transforms import postprocess, preprocess

    _set_threads(1)
    rng = np.random.default_rng(0)
    width, height = POST_PHOTO
    photo = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    logits = torch.randn(18, 128, 128)
    _, inverse = preprocess(photo, 512)
    reps = args.reps * 3
    pre = _median_ms(lambda: preprocess(photo, 512), reps)
    with torch.inference_mode():
        post = _median_ms(lambda: postprocess(logits, inverse, width, height, 512), reps)
    return {"preprocess_ms": pre, "postprocess_ms": post}


def _median_ms(fn, reps: int) -> float:
    fn()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def _set_threads(threads: int) -> None:
    import cv2
    import torch

    torch.set_num_threads(threads)
    cv2.setNumThreads(threads)


def run_child(*extra: str, env: dict | None = None) -> dict:
    """Run this script as a child with ``extra`` arguments; its JSON result."""
    proc = subprocess.run([sys.executable, __file__, *extra], capture_output=True, text=True,
                          cwd=ROOT, env={**os.environ, **(env or {})})
    if proc.returncode != 0:
        return {"error": (proc.stderr.strip().splitlines() or ["failed"])[-1][:160]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def measure(args: argparse.Namespace, size: int, threads: int, backend: str, precision: str,
            warmup: int, reps: int, scratch: Path) -> dict:
    """Cold start (and, at 1 thread, a warm start from the cache) of one configuration."""
    common = ["--child", "forward", "--size", str(size), "--threads", str(threads),
              "--backend", backend, "--precision", precision, "--warmup", str(warmup),
              "--reps", str(reps)]
    cache = scratch / _cache_name(backend, size, threads, precision)
    extra, env = [], {}
    if backend == "openvino":
        extra = ["--cache-dir", str(cache)]
    elif backend == "inductor":
        env = {"TORCHINDUCTOR_CACHE_DIR": str(cache)}
    cold = run_child(*common, *extra, "--agreement", env=env)
    if threads == 1 and backend != "eager" and "error" not in cold:
        warm = run_child(*common[:-4], "--warmup", "0", "--reps", "1", *extra, env=env)
        cold["warm_ready_s"] = warm.get("ready_s")
        cold["warm_cache"] = warm.get("cache", "inductor cache" if backend == "inductor" else "?")
    return cold


def main() -> None:
    args = parse_args()
    if args.child == "forward":
        print(json.dumps(child_forward(args)))
        return
    if args.child == "post":
        print(json.dumps(child_post(args)))
        return
    if args.child == "interleaved":
        print(json.dumps(child_interleaved(args)))
        return
    warmup, reps = (1, 3) if args.quick else (2, 6)
    sizes = [512] if args.quick and args.sizes is None else (args.sizes or [512, 473])
    print(f"SCHP forward, random weights, median of {reps} after {warmup} warm-up; each line "
          "a fresh process; ratio = median / eager fp32 median at the same threads and size "
          "in this run (shared machine: absolute figures are noisy, ratios less so)")
    print(f"{'input':>5} {'thr':>3} {'backend':>9} {'prec':>5} {'median ms':>9} {'min ms':>7} "
          f"{'ratio':>6} {'RSS MiB':>8} {'labels=fp32':>11} {'compile s':>9} "
          f"{'ready s':>7} {'warm ready s':>12}")
    with tempfile.TemporaryDirectory(prefix="bench-schp-") as scratch:
        for size in sizes:
            for threads in args.threads:
                base = None
                for backend in args.backends:
                    for precision in PRECISIONS:
                        r = measure(args, size, threads, backend, precision, warmup, reps,
                                    Path(scratch))
                        if (backend, precision) == ("eager", "fp32") and "error" not in r:
                            base = r["median_ms"]
                        _print_forward(size, threads, backend, precision, r, base)
        print(f"\nInterleaved, one process per input size and thread count: every variant "
              f"timed in turn, {reps + 2} rounds after 1 warm-up (the fairest ratios here)")
        print(f"{'input':>5} {'thr':>3} " + " ".join(f"{b + ' ' + p:>14}" for b in args.backends
                                                   for p in PRECISIONS))
        for size in sizes:
            for threads in args.threads:
                r = run_child("--child", "interleaved", "--size", str(size), "--threads",
                              str(threads), "--backends", *args.backends, "--cache-dir",
                              scratch, "--warmup", "1", "--reps", str(reps + 2))
                _print_interleaved(size, threads, args.backends, r)
    r = run_child("--child", "post", "--reps", str(reps))
    print(f"\nPre/post-processing, {POST_PHOTO[0]}x{POST_PHOTO[1]} photo, 512 input, "
          "18 classes, 1 thread:")
    for key, value in r.items():
        print(f"  {key:>16}: {value:.1f}" if isinstance(value, float) else f"  {key}: {value}")
    print("\nlabels=fp32: share of the 1/4-resolution argmax equal to eager fp32 (random "
          "weights: bf16 figures are a worst case, see bench/schp_precision.py).\n"
          "compile s: conversion/compilation of a cold start; ready s: build + first forward; "
          "warm ready s: the same in a fresh process with the on-disk cache filled "
          "(OpenVINO: STATE_DIR cache; inductor: TORCHINDUCTOR_CACHE_DIR).")


def _print_forward(size: int, threads: int, backend: str, precision: str, r: dict,
                   base: float | None) -> None:
    if "error" in r:
        print(f"{size:>5} {threads:>3} {backend:>9} {precision:>5}  failed: {r['error']}",
              flush=True)
        return
    ratio = f"{r['median_ms'] / base:.2f}" if base else "-"
    agree = f"{100 * r['agreement']:.2f}%" if "agreement" in r else "-"
    compile_s = f"{r['compile_s']:.1f}" if r.get("compile_s") is not None else "-"
    warm = f"{r['warm_ready_s']:.1f}" if r.get("warm_ready_s") is not None else "-"
    print(f"{size:>5} {threads:>3} {backend:>9} {precision:>5} {r['median_ms']:>9.0f} "
          f"{r['min_ms']:>7.0f} {ratio:>6} {r['peak_rss_mib']:>8.0f} {agree:>11} "
          f"{compile_s:>9} {r['ready_s']:>7.1f} {warm:>12}", flush=True)


def _print_interleaved(size: int, threads: int, backends: list[str], r: dict) -> None:
    if "error" in r:
        print(f"{size:>5} {threads:>3}  failed: {r['error']}", flush=True)
        return
    base = r.get("eager fp32")
    cells = []
    for backend in backends:
        for precision in PRECISIONS:
            ms = r.get(f"{backend} {precision}")
            ratio = f" ({ms / base:.2f}x)" if base and ms else ""
            cells.append(f"{(f'{ms:.0f}' if ms else '-') + ratio:>14}")
    print(f"{size:>5} {threads:>3} " + " ".join(cells), flush=True)


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="512 only, 1 warm-up + 3 timed passes")
    p.add_argument("--sizes", type=int, nargs="+", choices=[512, 473])
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--backends", nargs="+", choices=BACKENDS, default=list(BACKENDS))
    p.add_argument("--child", choices=["forward", "post", "interleaved"], help=argparse.SUPPRESS)
    p.add_argument("--size", type=int, default=512, help=argparse.SUPPRESS)
    p.add_argument("--backend", default="eager", help=argparse.SUPPRESS)
    p.add_argument("--precision", default="fp32", help=argparse.SUPPRESS)
    p.add_argument("--cache-dir", help=argparse.SUPPRESS)
    p.add_argument("--agreement", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--warmup", type=int, default=1, help=argparse.SUPPRESS)
    p.add_argument("--reps", type=int, default=3, help=argparse.SUPPRESS)
    return p.parse_args()


if __name__ == "__main__":
    main()
