"""Where worker N runs: its own CPU cores, and its own GPU when the device is CUDA.

Must run BEFORE torch (or anything that starts thread pools) is imported:
the core set and the ``*_NUM_THREADS`` variables are read once, at start.

Cores: worker N takes ``threads`` consecutive cores from the sorted set the
process may use (``os.sched_getaffinity(0)``), starting at ``N * threads`` and
wrapping around when there are fewer cores than workers x threads (workers
then share cores, evenly). GPUs: with ``workers.gpus`` set (e.g. ``"0,1"``)
and device ``cuda``/``auto``, worker N sees only GPU ``gpus[N % len(gpus)]``
through ``CUDA_VISIBLE_DEVICES``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, MutableMapping
from dataclasses import dataclass

from common.config import WorkerSettings

#: Environment variables that size the thread pools of torch, OpenMP, MKL and OpenBLAS.
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


@dataclass(frozen=True)
class Placement:
    """What :func:`place` chose (logged at start-up)."""

    cores: tuple[int, ...] | None   #: None when affinity is off
    threads: int
    gpu: str | None                 #: the CUDA device id made visible, or None


def pick_cores(available: Iterable[int], index: int, threads: int) -> list[int]:
    """``threads`` cores for worker ``index`` (see the module docstring)."""
    cores = sorted(set(available))
    if not cores:
        raise ValueError("no CPU cores available")
    if threads >= len(cores):
        return cores
    start = (index * threads) % len(cores)
    return sorted(cores[(start + i) % len(cores)] for i in range(threads))


def pick_gpu(gpus: list[str], index: int) -> str | None:
    return gpus[index % len(gpus)] if gpus else None


def place(workers: WorkerSettings, index: int, environ: MutableMapping[str, str],
          set_affinity: bool = True) -> Placement:
    """Pin this process for worker ``index`` and size its thread pools.

    Changes ``environ`` (the thread variables, ``CUDA_VISIBLE_DEVICES``) and,
    with ``workers.cpu_affinity``, this process's CPU affinity.
    """
    for var in THREAD_VARS:
        environ[var] = str(workers.threads)
    cores = None
    if workers.cpu_affinity:
        cores = tuple(pick_cores(os.sched_getaffinity(0), index, workers.threads))
        if set_affinity:
            os.sched_setaffinity(0, cores)
    gpu = None
    if workers.device in ("cuda", "auto"):
        gpu = pick_gpu(workers.gpu_ids, index)
        if gpu is not None:
            environ["CUDA_VISIBLE_DEVICES"] = gpu
    return Placement(cores=cores, threads=workers.threads, gpu=gpu)
