"""Bad input against the REAL running service: every bad request gets a 4xx JSON error,
nothing is left behind, and the service stays healthy; photos in unusual pixel
layouts are processed and their masks come out at the displayed size and
orientation. One service for the whole module (the bad requests do not change it).
"""

from __future__ import annotations

import io
import socket
import threading
from pathlib import Path

import numpy as np
import pytest
import requests
from PIL import Image

from tests.faults import hostile
from tests.faults.kit import BAD_INPUTS
from tests.support.images import encode
from tests.support.ledger import JobLedger
from tests.support.service import ServiceTree, mask_of, person_photo
from tests.support.trees import service_fixture

#: Body limit of the module's service (MAX_UPLOAD_MB=0.5), in bytes.
UPLOAD_LIMIT = 512 * 1024

PHOTO = person_photo()
UPRIGHT = Image.open(io.BytesIO(PHOTO)).convert("RGB").crop((0, 0, 512, 400))  # not square
BAD = hostile.bad_requests(PHOTO, UPLOAD_LIMIT)
ODD = hostile.odd_photos(UPRIGHT)


service = service_fixture("service", "module", workers=1, MAX_UPLOAD_MB="0.5")


@pytest.fixture(scope="module")
def book(service) -> JobLedger:
    return JobLedger(service)


def assert_healthy(service: ServiceTree) -> None:
    assert all(p.poll() is None for p in service.procs.values()), "a process died"
    assert service.get("/health").status_code == 200


def incoming(service: ServiceTree) -> list[Path]:
    folder = service.root / "tmp" / "incoming"
    return list(folder.iterdir()) if folder.is_dir() else []


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_request_gets_a_4xx_json_error(service, name):
    bad = BAD[name]
    BAD_INPUTS.append(name)
    resp = requests.post(service.url + "/process", data=bad.body,
                         headers={"Content-Type": bad.content_type}, timeout=30)
    assert resp.status_code == bad.status, resp.text
    assert resp.headers["Content-Type"].startswith("application/json")
    error = resp.json()["error"]
    assert isinstance(error, str) and error.startswith(bad.error_start), error
    assert not incoming(service), "a refused photo was left in TEMP_FOLDER"
    assert_healthy(service)


def test_chunked_upload_over_the_limit_is_cut_off_with_413(service):
    BAD_INPUTS.append("over_size_limit_chunked")
    data = hostile.form(PHOTO + b"\0" * UPLOAD_LIMIT)

    def chunks():  # no Content-Length: the limit is found while reading
        for i in range(0, len(data), 16384):
            yield data[i:i + 16384]
    resp = requests.post(service.url + "/process", data=chunks(),
                         headers={"Content-Type": hostile.FORM}, timeout=30)
    assert resp.status_code == 413
    assert resp.json()["error"].startswith("the upload is larger than the limit of 524288 bytes")
    assert not incoming(service)
    assert_healthy(service)


def test_bad_job_ids_in_the_url_get_a_4xx_json_error(service):
    for job_id in ("..%2F..%2Fetc%2Fpasswd", "a" * 10_000, "%00", "%FF%FE", "no-such-job"):
        BAD_INPUTS.append(f"GET /jobs/{job_id[:20]}")
        resp = service.get(f"/jobs/{job_id}")
        assert resp.status_code in (400, 404), resp.text
        assert "error" in resp.json()
    assert_healthy(service)


def test_slow_client_trickling_its_upload_does_not_hold_up_others(service, book):
    BAD_INPUTS.append("slow_client_trickle")
    bad = BAD["not_an_image"]
    request = (f"POST /process HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {bad.content_type}"
               f"\r\nContent-Length: {len(bad.body)}\r\n\r\n").encode() + bad.body
    others_done = threading.Event()
    sent_before: list[int] = []

    def trickle(sock: socket.socket) -> None:
        pos = 0
        while not others_done.wait(0.1):   # a few bytes per 100 ms ...
            sock.sendall(request[pos:pos + 4])
            pos += 4
        sent_before.append(pos)
        sock.sendall(request[pos:])        # ... then the rest

    with socket.create_connection(("127.0.0.1", service.port), timeout=30) as sock:
        slow = threading.Thread(target=trickle, args=(sock,))
        slow.start()
        try:
            # A normal request is served in full while the slow one is still arriving.
            assert book.post("trickle-neighbour", PHOTO).status_code == 202
        finally:
            others_done.set()
            slow.join(30)
        assert sent_before and sent_before[0] < len(request)
        answer = read_response(sock)
    assert answer.startswith(b"HTTP/1.1 415 "), answer[:200]
    assert b'"error": "user_image is not an image' in answer
    service.wait_delivered(["trickle-neighbour"])


def read_response(sock: socket.socket) -> bytes:
    """Everything the server sends until it has sent a whole JSON body."""
    data = b""
    while not data.rstrip().endswith(b"}"):
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


@pytest.mark.parametrize("name", sorted(ODD))
def test_unusual_photo_is_processed_at_its_displayed_size(service, book, name):
    data, displayed = ODD[name]
    job_id = f"odd-{name.replace('_', '-')}"
    assert book.post(job_id, data).status_code == 202
    record = service.wait_state(job_id, ("done", "failed"))
    assert record["state"] == "done", record
    [upload] = [u for u in service.receiver.uploads if u["job_id"] == job_id]
    upper = mask_of(upload["files"]["upper_body_mask"])
    lower = mask_of(upload["files"]["lower_body_mask"])
    assert upper.shape == lower.shape == (displayed.height, displayed.width)
    assert upper.any()
    if "orientation" in name:
        # the same person, the same way up, as the upright photo
        reference = reference_mask(service, book)
        overlap = (upper & reference).sum() / max(1, (upper | reference).sum())
        assert overlap > 0.8, f"IoU with the upright photo's mask is {overlap:.2f}"


_REFERENCE: dict[str, np.ndarray] = {}


def reference_mask(service: ServiceTree, book: JobLedger) -> np.ndarray:
    """The upper-body mask of the upright photo (processed once)."""
    if "upper" not in _REFERENCE:
        job_id = "odd-upright-reference"
        resp = book.post(job_id, encode(UPRIGHT, "JPEG", quality=92))
        assert resp is not None, f"no answer to {job_id}"
        assert resp.status_code == 202
        service.wait_delivered([job_id])
        [upload] = [u for u in service.receiver.uploads if u["job_id"] == job_id]
        _REFERENCE["upper"] = mask_of(upload["files"]["upper_body_mask"])
    return _REFERENCE["upper"]


def test_after_all_that_a_normal_photo_is_processed_and_every_job_accounted(service, book):
    assert_healthy(service)
    assert book.post("after-bad-input", PHOTO).status_code == 202
    tally = book.settle(timeout=90)
    assert tally.delivered == tally.accepted and not tally.failed
    assert not incoming(service)
