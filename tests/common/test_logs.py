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
