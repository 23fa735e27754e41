"""Which cores and GPU worker N gets."""

import os

import pytest

from common.config import ConfigError, WorkerSettings, load_settings
from segworker import affinity


@pytest.mark.parametrize("available, index, threads, expected", [
    (range(8), 0, 2, [0, 1]),
    (range(8), 3, 2, [6, 7]),
    (range(8), 4, 2, [0, 1]),            # more workers than cores: wrap around
    (range(4), 1, 3, [0, 1, 3]),         # 3..5 wraps to 3, 0, 1
    ([2, 5, 9], 1, 1, [5]),              # only the cores this process may use
    (range(2), 0, 4, [0, 1]),            # more threads than cores: all of them
])
def test_pick_cores(available, index, threads, expected):
    assert affinity.pick_cores(available, index, threads) == expected


def test_every_core_is_used_evenly_when_workers_fill_the_machine():
    cores = [c for i in range(4) for c in affinity.pick_cores(range(8), i, 2)]
    assert sorted(cores) == list(range(8))


def test_gpus_round_robin_and_bad_lists_are_refused():
    assert WorkerSettings(gpus=" 0, 1 ").gpu_ids == ["0", "1"] and WorkerSettings().gpu_ids == []
    assert [affinity.pick_gpu(["0", "1"], i) for i in range(3)] == ["0", "1", "0"]
    assert affinity.pick_gpu([], 3) is None
    with pytest.raises(ConfigError, match=r"workers.gpus \(WORKER_GPUS\).*'0,x'"):
        load_settings(environ={"WORKER_GPUS": "0,x"})


def test_place_sets_thread_variables_and_cuda_device_without_touching_the_process():
    environ: dict[str, str] = {}
    settings = WorkerSettings(threads=2, device="cuda", gpus="2,3", cpu_affinity=True)
    placement = affinity.place(settings, 1, environ, set_affinity=False)
    assert environ["OMP_NUM_THREADS"] == environ["MKL_NUM_THREADS"] == "2"
    assert environ["CUDA_VISIBLE_DEVICES"] == "3" and placement.gpu == "3"
    assert placement.cores == tuple(affinity.pick_cores(os.sched_getaffinity(0), 1, 2))
    cpu_only = affinity.place(WorkerSettings(device="cpu", gpus="0", cpu_affinity=False), 0, {})
    assert cpu_only.gpu is None and cpu_only.cores is None
