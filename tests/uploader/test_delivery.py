"""The HTTP delivery and its retry policy, against the real receiver (in-process)."""

from __future__ import annotations

import email.utils
import itertools
import random
import shutil
import subprocess
import time

import pytest

from common.config import UploadSettings
from common.logs import register_secret
from tests.support.receiver import Receiver
from tests.uploader.conftest import HANG_S, READ_TIMEOUT_S, SECRET, png_bytes
from uploader.delivery import (
    RETRY_AFTER_CAP,
    Deliverer,
    DeliveryHooks,
    RetryPolicy,
    parse_retry_after,
)

#: Time unit of these tests, in seconds.
UNIT = 0.01
#: Jitter setting of these tests (a fraction of the unit).
JITTER = 0.5
JOB = {"job_id": "job-42", "user_id": "user-7", "provider": "qwen", "image_path": "/x",
       "submitted_at": 0.0, "attempt": 0}
FILES = {"upper_body_mask": png_bytes(1), "lower_body_mask": png_bytes(2)}


class RecordingSleep:
    """Really sleeps, and remembers every wait it was asked for."""

    def __init__(self):
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        time.sleep(seconds)


class RecordingHooks(DeliveryHooks):
    def __init__(self):
        self.started, self.outcomes, self.retries = [], [], []

    def attempt_started(self, job_id, number):
        self.started.append(number)

    def attempt_finished(self, job_id, outcome):
        self.outcomes.append(outcome)

    def retry_scheduled(self, job_id, outcome, wait_s):
        self.retries.append(wait_s)


@pytest.fixture
def rx():
    receiver = Receiver(SECRET, hang_s=HANG_S)
    receiver.start()
    try:
        yield receiver
    finally:
        receiver.stop()


def settings(url: str, **kw) -> UploadSettings:
    base = {"url": url, "secret": SECRET, "retries": 5, "backoff_base_s": UNIT,
            "backoff_jitter_s": JITTER, "connect_timeout_s": 1.0, "read_timeout_s": READ_TIMEOUT_S}
    return UploadSettings(**{**base, **kw})


def deliver(url: str, files=FILES, **kw):
    sleep, hooks = RecordingSleep(), RecordingHooks()
    result = Deliverer(settings(url, **kw), sleep=sleep).deliver(JOB, files, hooks)
    return result, sleep, hooks


def test_first_try_sends_the_documented_request(rx):
    files = {**FILES, "seg_map": png_bytes(3)}
    result, sleep, _ = deliver(rx.url, files)
    assert result.ok and result.last.status == 200 and sleep.waits == []
    [up] = rx.uploads
    assert (up["job_id"], up["user_id"], up["provider"]) == ("job-42", "user-7", "qwen")
    assert up["files"] == files
    assert up["filenames"] == {n: f"{n}.png" for n in files}
    assert set(up["content_types"].values()) == {"image/png"}
    assert up["auth_ok"] and up["signature_ok"]
    assert up["headers"]["Idempotency-Key"] == "job-42"
    assert up["headers"]["X-Internal-Auth"] == SECRET
    assert up["headers"]["Content-Type"].startswith("multipart/form-data; boundary=")


def test_transient_failures_are_retried_with_doubling_waits(rx):
    rx.script([500, 503, 408, 429, 502])
    result, sleep, hooks = deliver(rx.url)
    assert result.ok and hooks.started == [1, 2, 3, 4, 5, 6]
    assert [o.status for o in hooks.outcomes] == [500, 503, 408, 429, 502, 200]
    assert hooks.retries == sleep.waits and sleep.waits == sorted(sleep.waits)
    for k, wait in enumerate(sleep.waits):  # unit x 1, 2, 4, 8, 16, plus jitter
        assert UNIT * 2 ** k <= wait <= UNIT * (2 ** k + JITTER)
    # what the receiver saw: each gap at least the wait before it
    seen = [u["received_mono"] for u in rx.uploads]
    gaps = [b - a for a, b in itertools.pairwise(seen)]
    assert all(gap >= wait for gap, wait in zip(gaps, sleep.waits))


def test_retry_after_is_honoured_in_time_units(rx):
    date = email.utils.formatdate(time.time() + 20, usegmt=True)
    rx.script([(503, 7), (429, date), (503, 10**6), (500, 30)])
    result, sleep, _ = deliver(rx.url)
    assert result.ok
    seven, dated, capped, ignored = sleep.waits
    assert UNIT * 7 <= seven <= UNIT * (7 + JITTER)
    assert UNIT * 18 <= dated <= UNIT * (20 + JITTER)      # whole-second HTTP dates
    assert UNIT * RETRY_AFTER_CAP <= capped <= UNIT * (RETRY_AFTER_CAP + JITTER)
    assert ignored <= UNIT * (8 + JITTER)                  # Retry-After only on 429/503


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 413, 422])
def test_client_errors_are_final_at_once(rx, status):
    rx.script([status])
    result, sleep, hooks = deliver(rx.url)
    assert not result.ok and hooks.started == [1] and sleep.waits == []
    assert result.reason == f"upload_rejected_{status}"
    assert result.last.status == status and f"scripted {status}" in result.last.body


def test_retries_are_bounded_by_the_setting(rx):
    rx.script([500] * 10)
    result, sleep, hooks = deliver(rx.url, retries=3)
    assert not result.ok and result.reason == "upload_retries_exhausted"
    assert hooks.started == [1, 2, 3, 4] and len(sleep.waits) == 3
    assert "HTTP 500" in result.detail and len(rx.uploads) == 4


def test_connection_refused_is_retried_then_exhausted(rx):
    rx.set_down(True)
    result, _sleep, hooks = deliver(rx.url, retries=2)
    assert result.reason == "upload_retries_exhausted" and hooks.started == [1, 2, 3]
    assert result.last.status is None and "ConnectionError" in result.last.error
    rx.set_down(False)
    assert deliver(rx.url)[0].ok


def test_a_hanging_server_times_out_and_the_retry_succeeds(rx):
    rx.script(["hang"])
    result, _, hooks = deliver(rx.url)
    assert result.ok
    assert hooks.outcomes[0].status is None and "Timeout" in hooks.outcomes[0].error
    assert [u["status"] for u in rx.uploads] == ["hang", 200]


def test_a_resumed_job_continues_its_count_and_backoff(rx):
    rx.script([500, 500])
    sleep, hooks = RecordingSleep(), RecordingHooks()
    result = Deliverer(settings(rx.url), sleep=sleep).deliver(JOB, FILES, hooks,
                                                              attempts_before=3)
    assert result.ok and hooks.started == [4, 5, 6]
    assert UNIT * 8 <= sleep.waits[0] <= UNIT * (8 + JITTER)
    # a job that already used every attempt still gets one more after a restart
    rx.script([500])
    result = Deliverer(settings(rx.url), sleep=sleep).deliver(JOB, FILES, attempts_before=9)
    assert result.reason == "upload_retries_exhausted"


def test_the_secret_never_reaches_error_texts(rx):
    register_secret(SECRET)
    rx.set_down(True)
    result, _, _ = deliver(f"{rx.url}?token={SECRET}", retries=0)
    assert result.last.error and SECRET not in result.last.error
    assert SECRET not in result.detail and "***" in result.detail


def test_retry_policy_schedule_without_a_server():
    policy = RetryPolicy(UploadSettings(backoff_base_s=1.0, backoff_jitter_s=0.25),
                         rng=random.Random(1))
    waits = [policy.wait_s(n) for n in range(1, 6)]
    for k, wait in enumerate(waits):
        assert 2 ** k <= wait <= 2 ** k + 0.25
    assert policy.wait_s(1, retry_after=30) >= 30       # production: real seconds
    assert policy.wait_s(5, retry_after=3) >= 16        # never shorter than the backoff
    zero = RetryPolicy(UploadSettings(backoff_base_s=0.0))
    assert zero.wait_s(4, retry_after=60) == 0.0


@pytest.mark.parametrize("value, expected", [
    (None, None), ("", None), ("soon", None), ("-5", None), ("0", 0.0), ("12", 12.0),
    ("100000", RETRY_AFTER_CAP), ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0),
])
def test_parse_retry_after(value, expected):
    assert parse_retry_after(value) == expected


def test_parse_retry_after_http_date_in_the_future():
    now = time.time()
    assert 9 <= parse_retry_after(email.utils.formatdate(now + 10, usegmt=True), now=now) <= 10


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_tls_certificates_are_verified(tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1", "-subj",
                    "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    receiver = Receiver(SECRET, tls=(str(cert), str(key)))
    url = receiver.start()
    try:
        untrusted, _, _ = deliver(url, retries=0)
        assert not untrusted.ok and "SSLError" in untrusted.last.error
        assert receiver.uploads == []
        trusted, _, _ = deliver(url, ca_bundle=str(cert))
        assert trusted.ok and receiver.delivered_job_ids() == ["job-42"]
    finally:
        receiver.stop()
