"""Fixtures for the uploader tests: a real HTTP receiver, a stub broker (the real
broker core, writing masks under the harness's TEMP_FOLDER), and a harness that runs ``python -m uploader`` as a real process (DEBUG logs to a
file that every test checks for the secret at teardown)."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from common.wire import LOWER, SEG_MAP, UPPER, make_job
from tests.support import procs
from tests.support.images import encode
from tests.support.observe import text_events
from tests.support.receiver import Receiver
from tests.support.stub_broker import StubBroker

#: The shared secret of these tests: random, so finding it in a log is meaningful.
SECRET = "test-secret-" + secrets.token_hex(16)
#: Retry time unit used by the process tests, in seconds (production: 1.0).
BASE_S = 0.01
#: Read timeout of the uploader tests, in seconds; the receiver's hang outlasts it.
#: Well above a loaded CI machine's slowest answer (434 ms seen), so only a hang times out.
READ_TIMEOUT_S = 1.0
#: How long a scripted "hang" withholds its answer, in seconds.
HANG_S = 2.5


def png_bytes(seed: int, size: tuple[int, int] = (12, 9)) -> bytes:
    """A small, distinct 0/255 single-channel PNG."""
    rng = np.random.default_rng(seed)
    mask = (rng.random((size[1], size[0])) > 0.5).astype(np.uint8) * 255
    return encode(mask, "PNG")


class Harness:
    """Paths, config and processes of one test's uploader."""

    def __init__(self, tmp: Path, url: str, endpoint: str):
        self.tmp = tmp
        self.temp_folder = tmp / "temp"
        self.state_dir = tmp / "state"
        self.temp_folder.mkdir(exist_ok=True)
        self.url, self.endpoint = url, endpoint
        self.config = tmp / "config.yaml"
        raw = {"upload": {"connect_timeout_s": 1.0, "read_timeout_s": READ_TIMEOUT_S}}
        self.config.write_text(yaml.safe_dump(raw))  # over the defaults, like config.yaml
        self.procs: list[subprocess.Popen] = []
        self.log_paths: list[Path] = []
        self._seed = 0

    @property
    def root(self) -> Path:
        return self.state_dir / "uploader"

    def env(self, **extra: str) -> dict[str, str]:
        env = {"SCHP_CONFIG_PATH": str(self.config), "MASK_ASSET_URL": self.url,
               "MASK_COMPONENT_SECRET": SECRET, "BROKER_UPLOADER_ENDPOINT": self.endpoint,
               "HEARTBEAT_INTERVAL_S": "0.2", "TEMP_FOLDER": str(self.temp_folder),
               "STATE_DIR": str(self.state_dir), "UPLOAD_BACKOFF_BASE_S": str(BASE_S),
               "LOG_LEVEL": "DEBUG"}
        env.update(extra)
        return env

    def start(self, *args: str, **extra: str) -> subprocess.Popen:
        log = self.tmp / f"uploader-{len(self.log_paths)}.log"
        self.log_paths.append(log)
        proc = procs.start("uploader", self.env(**extra), *args, log_path=log)
        self.procs.append(proc)
        return proc

    def run(self, *args: str, timeout: float = 30, **extra: str) -> subprocess.CompletedProcess:
        """Run ``python -m uploader ARGS`` to completion; output is kept and logged."""
        full = {**os.environ, "PYTHONUNBUFFERED": "1", **self.env(**extra)}
        done = subprocess.run([sys.executable, "-m", "uploader", *args], cwd=procs.ROOT,
                              env=full, capture_output=True, text=True, timeout=timeout)
        log = self.tmp / f"run-{len(self.log_paths)}.log"
        log.write_text(done.stdout + done.stderr)
        self.log_paths.append(log)
        return done

    def log_text(self) -> str:
        return "".join(p.read_text(errors="replace") for p in self.log_paths if p.exists())

    def events(self, name: str, job_id: str | None = None) -> list[dict[str, Any]]:
        return text_events(self.log_text(), name, job_id)

    def write_job(self, job_id: str, seg_map: bool = False) -> tuple[dict, dict[str, str]]:
        """A job whose photo and masks exist under TEMP_FOLDER (as the pipeline leaves them)."""
        job_dir = self.temp_folder / "jobs" / job_id
        job_dir.mkdir(parents=True)
        image = job_dir / "image.jpg"
        image.write_bytes(b"\xff\xd8 not really a jpeg")
        masks = {}
        for name in (UPPER, LOWER) + ((SEG_MAP,) if seg_map else ()):
            self._seed += 1
            path = job_dir / f"{name}.png"
            path.write_bytes(png_bytes(self._seed))
            masks[name] = str(path)
        return make_job(job_id, "user-1", "qwen", str(image), 1700000000.0), masks

    def stop_all(self) -> None:
        for proc in self.procs:
            procs.stop(proc)


@pytest.fixture
def rx():
    receiver = Receiver(SECRET, hang_s=HANG_S)
    receiver.start()
    try:
        yield receiver
    finally:
        receiver.stop()


@pytest.fixture
def broker(tmp_path):
    with StubBroker(tmp_path / "temp", on_disk=True) as stub:
        yield stub


@pytest.fixture
def up(tmp_path, rx, broker):
    harness = Harness(tmp_path, rx.url, broker.uploader_endpoint)
    try:
        yield harness
    finally:
        harness.stop_all()
    text = harness.log_text()
    assert SECRET not in text, "the secret appeared in the uploader's output"
