"""``python -m frontend`` as a real process: start-up, JSON logs, SIGTERM drain, config errors."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys

import pytest
import requests

from tests.frontend import photos
from tests.support import forms, procs
from tests.support.stub_broker import FRONT, StubBroker


@pytest.fixture
def running(tmp_path):
    """(process, base url, log path, stub broker) for a front end on a free port."""
    port = procs.free_port()
    log_path = tmp_path / "frontend.log"
    with StubBroker(tmp_path / "tmp") as stub:
        stub.add_worker("w0", takes_jobs=False)
        stub.add_uploader()
        env = {"HOST": "127.0.0.1", "PORT": str(port), "BROKER_FRONTEND_ENDPOINT": stub.front_endpoint,
               "TEMP_FOLDER": str(tmp_path / "tmp"), "API_KEY": "main-test-key",
               "LOG_LEVEL": "INFO"}
        proc = procs.start("frontend", env, log_path=log_path)
        try:
            base = f"http://127.0.0.1:{port}"
            procs.wait_for(lambda: _answers(base), timeout=20, what="frontend to listen")
            yield proc, base, log_path, stub
        finally:
            procs.stop(proc)


def _answers(base: str) -> bool:
    try:
        return requests.get(base + "/health", timeout=1).status_code == 200
    except requests.ConnectionError:
        return False


def _log_events(log_path) -> list[dict]:
    return [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()]


def test_serves_logs_json_and_drains_on_sigterm(running):
    proc, base, log_path, stub = running
    key = {"X-API-Key": "main-test-key"}
    files = {"user_image": ("p.jpg", photos.jpeg(), "image/jpeg")}
    response = requests.post(base + "/process", files=files, headers=key, timeout=10,
                             data={"user_id": "u1", "job_id": "main-1"})
    assert response.status_code == 202, response.text

    # An upload in progress when SIGTERM arrives is finished, then the process exits.
    payload = forms.body(*forms.process_parts(photos.jpeg(), job_id="main-2"))
    slow = socket.create_connection(("127.0.0.1", int(base.rsplit(":", 1)[1])), timeout=10)
    with slow:
        slow.sendall(b"POST /process HTTP/1.1\r\nHost: x\r\nX-API-Key: main-test-key\r\n"
                     + f"Content-Type: {forms.content_type()}\r\n".encode()
                     + f"Content-Length: {len(payload)}\r\n\r\n".encode() + payload[:200])
        procs.wait_for(lambda: "frontend_started" in log_path.read_text(), 5, what="start log")
        proc.send_signal(signal.SIGTERM)
        procs.wait_for(lambda: "frontend_stopping" in log_path.read_text(), 10, what="stopping")
        slow.sendall(payload[200:])
        reply = slow.recv(65536)
    assert reply.startswith(b"HTTP/1.1 202"), reply[:200]
    assert proc.wait(timeout=15) == 0

    events = _log_events(log_path)  # every line is JSON
    names = [e["event"] for e in events]
    assert {"frontend_started", "job_submitted", "frontend_stopping", "frontend_stopped"} <= set(names)
    assert [e["job_id"] for e in events if e["event"] == "job_submitted"] == ["main-1", "main-2"]
    assert [e["drained"] for e in events if e["event"] == "frontend_stopped"] == [True]
    assert all(e["proc"] == "frontend" for e in events)
    assert "main-test-key" not in log_path.read_text()
    assert len(stub.messages(FRONT, "submit")) == 2
    assert stub.record("main-2")["state"] == "queued"


def test_the_listen_queue_takes_a_burst_of_connections(running):
    """A burst of simultaneous connects must not overflow the accept queue (the
    overflow's SYNs are resent only after a second): the kernel's listening
    socket has the front end's backlog, as far as net.core.somaxconn allows."""
    from frontend.lifecycle import LISTEN_BACKLOG
    _proc, base, _log, _stub = running
    port = base.rsplit(":", 1)[1]
    listed = subprocess.run(["ss", "-Hltn", f"sport = :{port}"], capture_output=True,
                            text=True, timeout=10)
    [line] = [ln for ln in listed.stdout.splitlines() if ln.strip()]
    backlog = int(line.split()[2])  # Send-Q of a listening socket is its backlog
    with open("/proc/sys/net/core/somaxconn") as fh:
        assert backlog == min(LISTEN_BACKLOG, int(fh.read()))


def test_configuration_error_exits_2(tmp_path):
    result = subprocess.run([sys.executable, "-m", "frontend"], cwd=procs.ROOT, timeout=60,
                            env={"PATH": "/usr/bin:/bin", "PORT": "70000"},
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert "server.port" in result.stderr
