"""How the worker turns one job into a result or a failure reason (no sockets)."""

import pytest

from common import wire
from segworker.worker import run_job
from tests.segworker.worker_support import FakeEngine, FakeProcess, png_photo, worker_settings

SETTINGS = worker_settings("tcp://127.0.0.1:1")


def _run(image=None, path="/nonexistent/photo.png", settings=SETTINGS):
    job = wire.make_job("job-1", "u", "qwen", path, 0.0, 1)
    return run_job(job, image, FakeEngine(), FakeProcess(), settings)


@pytest.mark.parametrize("image, reason, retryable", [
    (b"not an image", "bad_image", False),
    (png_photo(17, 20), "no_person", False),
    (png_photo(18, 20), "engine_exploded", False),
    (png_photo(19, 20), "worker_error", True),
    (None, "image_missing", False),
])
def test_failures_carry_a_reason_and_retryability(image, reason, retryable):
    outcome = _run(image)
    assert outcome.msg_type == "failed"
    assert (outcome.fields["reason"], outcome.fields["retryable"]) == (reason, retryable)
    assert (outcome.fields["job_id"], outcome.fields["attempt"]) == ("job-1", 1)
    assert outcome.fields["detail"]


def test_unexpected_errors_are_logged_with_the_job_id(caplog):
    _run(png_photo(19, 20))
    assert "job_error" in caplog.text and "CUDA out of memory" in caplog.text


def test_photo_is_read_from_the_shared_path(tmp_path):
    photo = tmp_path / "p.png"
    photo.write_bytes(png_photo(30, 20))
    outcome = _run(path=str(photo))
    assert outcome.msg_type == "result" and set(outcome.fields["masks"]) == {wire.UPPER, wire.LOWER}


def test_unreadable_photo_is_retryable(tmp_path):
    outcome = _run(path=str(tmp_path))   # a directory: exists but cannot be read as a file
    assert (outcome.fields["reason"], outcome.fields["retryable"]) == ("image_unreadable", True)
