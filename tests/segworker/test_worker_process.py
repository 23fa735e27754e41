"""The real worker process (``python -m segworker``), parser engine, against a stub broker."""

from __future__ import annotations

import io
import signal
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from common import wire
from tests.support import procs
from tests.support.observe import log_events
from tests.support.stub_broker import WORKERS, StubBroker


@pytest.fixture
def stand_in(tmp_path):
    with StubBroker(tmp_path) as broker:
        yield broker


def _env(tmp_path: Path, broker: StubBroker, **extra: str) -> dict[str, str]:
    return {"BROKER_WORKER_ENDPOINT": broker.worker_endpoint, "SEGMENTATION_ENGINE": "parser",
            "HEARTBEAT_INTERVAL_S": "0.2", "WORKER_THREADS": "1",
            "TEMP_FOLDER": str(tmp_path / "tmp"), "STATE_DIR": str(tmp_path / "state"), **extra}


def _until(broker: StubBroker, msg_type: str, timeout: float = 60.0,
           proc=None, log: Path | None = None) -> tuple[bytes, dict, int]:
    """The next ``msg_type`` message from the worker, and how many heartbeats came
    before it. With ``proc``, fail at once (showing ``log``) if the process has exited."""
    beats, deadline = 0, time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"worker exited with {proc.returncode}:\n"
                                 f"{log.read_text()[-3000:] if log else ''}")
        try:
            peer, msg = broker.next_message(WORKERS, 1.0, skip=())
        except AssertionError:
            continue
        if msg["type"] == msg_type:
            return peer, msg, beats
        assert msg["type"] == "heartbeat", msg
        beats += 1
    raise AssertionError(f"no {msg_type} within {timeout}s")


@pytest.mark.slow
def test_parser_worker_serves_a_real_photo_and_drains_on_sigterm(tmp_path, stand_in):
    from skimage import data
    photo = tmp_path / "astronaut.png"
    Image.fromarray(data.astronaut()).save(photo)
    log = tmp_path / "worker.log"
    proc = procs.start("segworker", _env(tmp_path, stand_in), "--index", "1", log_path=log)
    try:
        _, ready, _ = _until(stand_in, "ready", 120, proc, log)   # engine load
        info = ready["worker"]
        assert (info["engine"], info["model_loaded"], info["index"], info["busy"]) == \
            ("parser", True, 1, False)
        assert info["id"].endswith(f"-{proc.pid}-1")
        [placed] = log_events(log, "worker_placed")
        assert placed["threads"] == 1 and len(placed["cores"]) == 1

        stand_in.submit("astro-1", str(photo))     # dispatched at once: the worker is idle
        _, result, _ = _until(stand_in, "result")
        assert (result["job_id"], result["engine"]) == ("astro-1", "parser")
        for name in (wire.UPPER, wire.LOWER):
            mask = Image.open(io.BytesIO(result["masks"][name]))
            assert mask.mode == "L" and mask.size == (512, 512)
            assert set(np.unique(np.asarray(mask))) <= {0, 255}
        _until(stand_in, "ready")
        _until(stand_in, "heartbeat")                   # heartbeats keep coming

        stand_in.submit("astro-2", str(photo))
        procs.wait_for(lambda: log_events(log, "job_started")[-1:] and
                       log_events(log, "job_started")[-1]["job_id"] == "astro-2", 30,
                       what="the second job to start")
        proc.send_signal(signal.SIGTERM)
        _, done, _ = _until(stand_in, "result")
        assert done["job_id"] == "astro-2"
        _until(stand_in, "disconnect")
        assert proc.wait(30) == 0
        assert [stand_in.record(j)["state"] for j in ("astro-1", "astro-2")] == ["uploading"] * 2
    finally:
        procs.stop(proc)


def test_bad_configuration_exits_2_before_loading_anything(tmp_path, stand_in):
    proc = procs.start("segworker", _env(tmp_path, stand_in, WORKER_GPUS="first"),
                       log_path=tmp_path / "worker.log")
    try:
        assert proc.wait(30) == 2
        assert "workers.gpus" in (tmp_path / "worker.log").read_text()
    finally:
        procs.stop(proc)
