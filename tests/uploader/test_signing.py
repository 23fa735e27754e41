"""The X-Signature scheme: what the uploader signs, and what a receiver accepts."""

from __future__ import annotations

import time

import pytest

from tests.support.receiver import check_signature
from uploader.signing import sign, signature, verify_signature

SECRET = "signing-secret-0123456789"
BODY = b"--b\r\nContent-Disposition: form-data; name=\"job_id\"\r\n\r\nj1\r\n--b--\r\n"


def test_signature_round_trip_and_documented_format():
    header = sign(SECRET, BODY, timestamp=1_700_000_000)
    assert header == f"t=1700000000,v1={signature(SECRET, 1_700_000_000, BODY)}"
    assert verify_signature(SECRET, header, BODY, now=1_700_000_010)
    # the receiver stand-in implements the documented check independently
    assert check_signature(SECRET, sign(SECRET, BODY), BODY)


@pytest.mark.parametrize("secret, body", [
    ("another-secret-0123456789", BODY),        # wrong key
    (SECRET, BODY + b"x"),                      # body changed by one byte
    (SECRET, BODY.replace(b"j1", b"j2")),       # a field changed
])
def test_signature_rejects_a_different_key_or_body(secret, body):
    header = sign(SECRET, BODY)
    assert not verify_signature(secret, header, body)
    assert not check_signature(secret, header, body)


def test_signature_outside_tolerance_is_refused():
    now = time.time()
    old = sign(SECRET, BODY, timestamp=int(now) - 301)
    future = sign(SECRET, BODY, timestamp=int(now) + 301)
    assert not verify_signature(SECRET, old, BODY, tolerance_s=300, now=now)
    assert not verify_signature(SECRET, future, BODY, tolerance_s=300, now=now)
    assert verify_signature(SECRET, old, BODY, tolerance_s=400, now=now)


@pytest.mark.parametrize("header", [
    None, "", "garbage", "t=,v1=", "t=abc,v1=00", "v1=" + "0" * 64, "t=1700000000",
    "t=1700000000,v1=é", "t=²,v1=00", "t=1700000000;v1=00",
])
def test_malformed_signature_headers_are_invalid_not_errors(header):
    assert verify_signature(SECRET, header, BODY, now=1_700_000_000) is False


def test_any_of_several_v1_values_may_match_during_rotation():
    t = 1_700_000_000
    header = f"t={t},v1={signature('old-secret-0123456789', t, BODY)},v1={signature(SECRET, t, BODY)}"
    assert verify_signature(SECRET, header, BODY, now=t)
