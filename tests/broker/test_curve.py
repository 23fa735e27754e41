"""CURVE: only workers whose public key is in the allow-list directory get jobs."""

from __future__ import annotations

import os
import shutil
import signal
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import zmq

from common import curve
from segworker.worker import Worker
from tests.broker.clients import FakeWorker, FrontEnd, broker_env
from tests.segworker.worker_support import FakeEngine, FakeProcess, png_photo, worker_settings
from tests.support import procs


def test_keygen_writes_an_owner_only_secret_and_refuses_to_overwrite(tmp_path):
    cmd = [sys.executable, "-m", "broker", "keygen", str(tmp_path / "keys"), "broker"]
    first = subprocess.run(cmd, cwd=procs.ROOT, capture_output=True, text=True, timeout=60)
    assert first.returncode == 0, first.stderr
    secret = tmp_path / "keys" / "broker.key_secret"
    assert stat.S_IMODE(os.stat(secret).st_mode) == 0o600
    public, secret_key = curve.load_secret(secret)
    assert curve.load_public(tmp_path / "keys" / "broker.key") == public and len(secret_key) == 40
    again = subprocess.run(cmd, cwd=procs.ROOT, capture_output=True, text=True, timeout=60)
    assert again.returncode == 2 and "already exists" in again.stderr


def test_missing_key_file_is_a_clear_error(tmp_path):
    with pytest.raises(curve.CurveError, match="cannot read CURVE key file"):
        curve.load_secret(tmp_path / "nope.key_secret")


def _curve_broker(tmp_path: Path, allowed_worker: str, *other_workers: str,
                  ) -> tuple[Path, Path, dict[str, str], Path]:
    """Key pairs for the broker and the workers in ``tmp_path/keys``, only
    ``allowed_worker``'s public key in the allow-list folder, and the environment of
    a CURVE broker using them. Returns (keys, allow-list, env, TEMP_FOLDER created)."""
    keys, allowed = tmp_path / "keys", tmp_path / "allowed"
    allowed.mkdir()
    for name in ("broker", allowed_worker, *other_workers):
        curve.generate(keys, name)
    shutil.copy(keys / f"{allowed_worker}.key", allowed)
    env = broker_env(tmp_path, BROKER_CURVE="true",
                     BROKER_CURVE_SECRET_FILE=str(keys / "broker.key_secret"),
                     BROKER_CURVE_AUTHORIZED_DIR=str(allowed))
    temp = Path(env["TEMP_FOLDER"])
    temp.mkdir(parents=True)
    return keys, allowed, env, temp


def _client_keys(keys: Path, name: str) -> tuple[bytes, bytes, bytes]:
    public, secret = curve.load_secret(keys / f"{name}.key_secret")
    return public, secret, curve.load_public(keys / "broker.key")


def test_only_allowed_workers_get_jobs_and_sighup_reloads_the_list(tmp_path):
    keys, allowed, env, temp = _curve_broker(tmp_path, "good", "stranger")
    ctx = zmq.Context()
    proc = procs.start("broker", env, log_path=tmp_path / "broker.log")
    peers = []
    try:
        front = FrontEnd(ctx, env["BROKER_FRONTEND_ENDPOINT"])
        stranger = FakeWorker(ctx, env["BROKER_WORKER_BIND"], "stranger",
                              keys=_client_keys(keys, "stranger"))
        good = FakeWorker(ctx, env["BROKER_WORKER_BIND"], "good", keys=_client_keys(keys, "good"))
        peers = [front, stranger, good]
        front.wait_up()
        stranger.ready()            # first in line, if it were let in
        assert front.submit(temp, "job-1")["outcome"] == "accepted"
        good.ready()
        job = good.next_job()["job"]
        assert job["job_id"] == "job-1"
        good.result(job)
        assert stranger.poll(0) is None
        assert list(front.stats()["per_worker"]) == ["good"]

        # Allow the stranger's key; its next connection (a worker re-creates its
        # socket when the broker stays silent) is admitted.
        shutil.copy(keys / "stranger.key", allowed)
        os.kill(proc.pid, signal.SIGHUP)
        procs.wait_for(lambda: "curve_keys_reloaded" in (tmp_path / "broker.log").read_text(),
                       10, what="the allow-list reload")
        stranger.close()
        stranger = FakeWorker(ctx, env["BROKER_WORKER_BIND"], "stranger",
                              keys=_client_keys(keys, "stranger"))
        peers.append(stranger)
        stranger.ready()
        front.submit(temp, "job-2")
        assert stranger.next_job()["job"]["job_id"] == "job-2"
    finally:
        procs.stop(proc)
        for peer in peers:
            peer.close()
        ctx.term()


def test_the_real_worker_authenticates_with_its_configured_keys(tmp_path):
    keys, _, env, temp = _curve_broker(tmp_path, "w")
    settings = worker_settings(env["BROKER_WORKER_BIND"],
                               WORKER_CURVE_SECRET_FILE=str(keys / "w.key_secret"),
                               WORKER_CURVE_SERVER_KEY_FILE=str(keys / "broker.key"))
    ctx = zmq.Context()
    proc = procs.start("broker", env, log_path=tmp_path / "broker.log")
    worker = Worker(settings, FakeEngine(), FakeProcess(), ctx=ctx, drain_s=1.0)
    thread = threading.Thread(target=worker.run, daemon=True)
    front = FrontEnd(ctx, env["BROKER_FRONTEND_ENDPOINT"])
    try:
        thread.start()
        front.wait_up()
        front.submit(temp, "job-1", png_photo())
        procs.wait_for(lambda: front.record("job-1")["state"] == "uploading", 20,
                       what="the CURVE worker's result")
    finally:
        worker.request_stop()
        thread.join(10)
        procs.stop(proc)
        front.close()
        ctx.term()
