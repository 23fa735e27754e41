import io
import json
import logging

from common.logs import event, redact, register_secret, setup_logging


def test_one_json_line_per_event_with_fields_and_secret_redacted():
    stream = io.StringIO()
    setup_logging("testproc", "DEBUG", stream=stream)
    register_secret("hunter2-secret")
    log = logging.getLogger("t")
    event(log, "job_accepted", job_id="j1", queue=3)
    event(log, "upload_failed", logging.WARNING, job_id="j2", detail="auth hunter2-secret rejected")
    try:
        raise RuntimeError("header X-Internal-Auth: hunter2-secret")
    except RuntimeError:
        event(log, "crash", logging.ERROR, exc_info=True, job_id="j3")
    lines = stream.getvalue().splitlines()
    assert len(lines) == 3
    first, second, third = (json.loads(line) for line in lines)
    assert first["event"] == "job_accepted" and first["job_id"] == "j1" and first["queue"] == 3
    assert first["proc"] == "testproc" and first["level"] == "info"
    assert second["detail"] == "auth *** rejected"
    assert "hunter2-secret" not in stream.getvalue()
    assert "RuntimeError" in third["exc"]
    assert redact("x hunter2-secret y") == "x *** y"


def test_a_secret_with_json_escaped_characters_is_redacted_too():
    # MASK_COMPONENT_SECRET may hold any printable ASCII, including " and \, which the
    # JSON line escapes: the escaped form must not slip past the redaction.
    stream = io.StringIO()
    setup_logging("testproc", "DEBUG", stream=stream)
    secret = 'q"uo\\te-secret-123'
    register_secret(secret)
    event(logging.getLogger("t"), "upload_failed", logging.WARNING, detail=f"auth {secret} bad")
    try:
        raise RuntimeError(f"header X-Internal-Auth: {secret}")
    except RuntimeError:
        event(logging.getLogger("t"), "crash", logging.ERROR, exc_info=True)
    out = stream.getvalue()
    assert "uo\\\\te-secret" not in out and "te-secret-123" not in out, out
    assert [json.loads(line)["event"] for line in out.splitlines()] == ["upload_failed", "crash"]


NATIVE_SCRIPT = r'''
import logging, os, sys, warnings
from common.logs import event, setup_logging, wrap_native_stderr
setup_logging("nativetest")
wrap_native_stderr()
os.write(2, b"W0000 00:00:1796116268.593709   23973 inference_feedback_manager.cc:114] Feedback off\n")
os.write(2, b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n")
os.write(2, b"WARNING: All log messages before absl::InitializeLog() are written to STDERR\n")
os.write(2, b"some bare text\n")
event(logging.getLogger("t"), "own_line", job_id="j1")
warnings.warn("deprecated thing")
raise RuntimeError("boom")
'''


def test_native_stderr_and_uncaught_errors_become_json_lines():
    import subprocess
    import sys

    from tests.support.procs import ROOT
    out = subprocess.run([sys.executable, "-c", NATIVE_SCRIPT], cwd=ROOT, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 1
    lines = [json.loads(line) for line in out.stderr.splitlines()]   # every line is JSON
    native = [e for e in lines if e["event"] == "native_log"]
    assert [(e["level"], e["text"]) for e in native] == [
        ("warning", "Feedback off"), ("info", "Created TensorFlow Lite XNNPACK delegate for CPU."),
        ("warning", "All log messages before absl::InitializeLog() are written to STDERR"),
        ("warning", "some bare text")]
    assert native[0]["source"] == "inference_feedback_manager.cc:114"
    events = [e["event"] for e in lines]
    assert "own_line" in events and "uncaught_exception" in events
    crash = next(e for e in lines if e["event"] == "uncaught_exception")
    assert crash["level"] == "critical" and "RuntimeError: boom" in crash["exc"]
    assert any("deprecated thing" in e["event"] for e in lines)
