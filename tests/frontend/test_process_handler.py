"""POST /process against the real application and a stub broker (the real broker core)."""

from __future__ import annotations

import errno
import os
import socket
import stat
from typing import Any, ClassVar
from unittest import mock

from common import files
from frontend import errors
from tests.frontend import photos
from tests.frontend.http_case import FrontendTestCase
from tests.support import forms
from tests.support.images import png_bomb


class AcceptTest(FrontendTestCase):

    def test_accepted_job_is_stored_private_and_submitted(self):
        image = photos.jpeg()
        response = self.post_form(forms.process_parts(image, job_id="job-42", user_id="u-7"))
        self.assertEqual(response.code, 202)
        self.assertEqual(self.json_of(response), {
            "status": "accepted", "queued": True, "job_id": "job-42",
            "message": "Job added to Qwen mask queue"})
        [path] = self.incoming()
        self.assertRegex(path.name, r"^job-42-[0-9a-f]{32}\.jpg$")
        self.assertEqual(path.read_bytes(), image)
        self.assertEqual(stat.S_IMODE(path.stat().st_mode), 0o600)
        self.assertEqual(stat.S_IMODE(path.parent.stat().st_mode), 0o700)
        [submit] = self.sent("submit")
        job = submit["job"]
        self.assertEqual((job["job_id"], job["user_id"], job["provider"], job["attempt"]),
                         ("job-42", "u-7", "qwen", 0))
        self.assertEqual(job["image_path"], str(path))
        self.assertTrue(os.path.isabs(job["image_path"]))
        [logged] = self.capture.named("job_submitted")
        self.assertEqual(logged["job_id"], "job-42")

    def test_every_pixel_layout_is_accepted(self):
        for i, (name, data) in enumerate(photos.accepted_variants().items()):
            with self.subTest(name):
                response = self.post_form(forms.process_parts(data, job_id=f"layout-{i}"))
                self.assertEqual(response.code, 202, response.body)
        suffixes = sorted(p.suffix for p in self.incoming())
        self.assertEqual(len(suffixes), len(photos.accepted_variants()))
        self.assertEqual(set(suffixes), {".jpg", ".png"})

    def test_explicit_qwen_provider_and_extra_fields_are_accepted(self):
        parts = forms.process_parts(photos.png(), provider="qwen") + [forms.part("note", "hi")]
        response = self.post_form(parts)
        self.assertEqual(response.code, 202)
        self.assertEqual(self.incoming()[0].suffix, ".png")

    def test_repeated_job_id_is_not_queued_twice(self):
        self.assertEqual(self.post_form(forms.process_parts(photos.jpeg())).code, 202)
        first = self.incoming()
        response = self.post_form(forms.process_parts(photos.jpeg()))
        self.assertEqual(response.code, 200)
        self.assertEqual(self.json_of(response), {
            "status": "accepted", "queued": False, "job_id": "job-1",
            "message": "Job already known (state: queued); not queued again", "state": "queued"})
        self.assertEqual(self.incoming(), first)

    def test_chunked_upload_within_limit_is_accepted(self):
        response = self.post_chunked(forms.process_parts(photos.jpeg()), 1000)
        self.assertEqual(response.code, 202, response.body)


class RejectTest(FrontendTestCase):
    """Every bad input: the right status, a JSON error, no file, nothing submitted."""

    settings_overrides: ClassVar[dict[str, Any]] = {"max_upload_mb": 0.25}

    def assert_rejected(self, response, status):
        body = self.assert_error(response, status)
        self.assertEqual(self.incoming(), [])
        self.assertEqual(self.sent("submit"), [])
        self.assertTrue(self.capture.named("job_rejected"))
        return body

    def test_photo_problems(self):
        cases = {"not_an_image": (b"hello, I am text", 415),
                 "truncated_jpeg": (photos.truncated_jpeg(), 422),
                 "png_50000x50000": (png_bomb(), 413),
                 "empty": (b"", 400),
                 **{name: (data, 415) for name, data in photos.other_formats().items()}}
        for name, (data, status) in cases.items():
            with self.subTest(name):
                self.assert_rejected(self.post_form(forms.process_parts(data)), status)

    def test_invalid_ids(self):
        bad = {"traversal": "../../etc/passwd", "empty": "", "10kB": "a" * 10_000,
               "nul": b"job\x00x", "non_utf8": b"job\xff\xfe", "dotdot": "a..b",
               "space": "job 1", "slash": "a/b"}
        for field in ("job_id", "user_id"):
            for name, value in bad.items():
                with self.subTest(field=field, case=name):
                    parts = forms.process_parts(photos.jpeg(), **{field: value})
                    self.assert_rejected(self.post_form(parts), 400)

    def test_nul_and_encoding_are_named(self):
        body = self.assert_rejected(
            self.post_form(forms.process_parts(photos.jpeg(), job_id=b"job\x00x")), 400)
        self.assertIn("NUL", body["error"])
        body = self.assert_rejected(
            self.post_form(forms.process_parts(photos.jpeg(), user_id=b"\xff")), 400)
        self.assertIn("UTF-8", body["error"])

    def test_missing_fields(self):
        for missing in ("user_image", "user_id", "job_id"):
            with self.subTest(missing):
                parts = [p for p in forms.process_parts(photos.jpeg())
                         if f'name="{missing}"'.encode() not in p]
                body = self.assert_rejected(self.post_form(parts), 400)
                self.assertIn(missing, body["error"])

    def test_duplicated_fields(self):
        for field in ("user_image", "user_id", "job_id", "provider"):
            with self.subTest(field):
                parts = forms.process_parts(photos.jpeg(), provider="qwen")
                parts += [p for p in parts if f'name="{field}"'.encode() in p]
                body = self.assert_rejected(self.post_form(parts), 400)
                self.assertIn("more than once", body["error"])

    def test_unknown_provider(self):
        for provider in ("openai", "", "QWEN"):
            with self.subTest(provider):
                parts = forms.process_parts(photos.jpeg(), provider=provider)
                body = self.assert_rejected(self.post_form(parts), 400)
                self.assertIn("provider", body["error"])

    def test_too_many_parts(self):
        parts = forms.process_parts(photos.jpeg()) + [forms.part(f"x{i}", "y") for i in range(97)]
        body = self.assert_rejected(self.post_form(parts), 400)
        self.assertIn("parts", body["error"])

    def test_malformed_multipart(self):
        good = forms.process_parts(photos.jpeg())
        cases = {"no_closing_boundary": forms.body(*good, close=False),
                 "empty_body": b"",
                 "garbage": b"\x00\x01 not multipart at all",
                 "part_without_disposition": forms.body(b"X-Other: 1\r\n\r\nvalue", *good),
                 "non_utf8_part_header": forms.body(forms.part(b"job_\xff", "x"), *good)}
        for name, payload in cases.items():
            with self.subTest(name):
                response = self.fetch("/process", method="POST", body=payload, raise_error=False,
                                      headers={"Content-Type": forms.content_type()})
                self.assert_rejected(response, 400)

    def test_wrong_content_type(self):
        payload = forms.body(*forms.process_parts(photos.jpeg()))
        for content_type in ("application/json", "text/plain", "multipart/mixed; boundary=x",
                             "application/x-www-form-urlencoded", ""):
            with self.subTest(content_type):
                response = self.fetch("/process", method="POST", body=payload, raise_error=False,
                                      headers={"Content-Type": content_type})
                self.assert_rejected(response, 415)

    def test_multipart_with_unreadable_parameters_is_a_bad_form_not_a_wrong_type(self):
        # Used to answer 415 "Content-Type must be multipart/form-data (got 'multipart/...')".
        for content_type in ("multipart/form-data; boundary=a; boundary=b",
                             "multipart/form-data; boundary=----=_Part_1", "multipart/form-data;;"):
            with self.subTest(content_type):
                response = self.fetch("/process", method="POST", raise_error=False,
                                      body=forms.body(*forms.process_parts(photos.jpeg())),
                                      headers={"Content-Type": content_type})
                self.assert_rejected(response, 400)

    def test_multipart_without_boundary(self):
        response = self.fetch("/process", method="POST", raise_error=False,
                              body=forms.body(*forms.process_parts(photos.jpeg())),
                              headers={"Content-Type": "multipart/form-data"})
        self.assert_rejected(response, 400)

    def test_body_over_limit_by_content_length(self):
        big = photos.jpeg() + b"\0" * 300_000
        body = self.assert_rejected(self.post_form(forms.process_parts(big)), 413)
        self.assertIn(str(self.server.max_upload_bytes), body["error"])

    def test_body_over_limit_when_chunked(self):
        response = self.post_chunked(forms.process_parts(photos.jpeg() + b"\0" * 300_000), 16_384)
        self.assert_rejected(response, 413)

    def test_get_on_process_is_405_json(self):
        response = self.fetch("/process", raise_error=False)
        self.assert_error(response, 405)
        self.assertEqual(response.headers["Allow"], "POST")


class BrokerOutcomeTest(FrontendTestCase):
    queue_max = 2

    def test_queue_full_is_503_with_retry_after(self):
        self.stub.fill_queue()
        response = self.post_form(forms.process_parts(photos.jpeg()))
        body = self.assert_error(response, 503)
        self.assertIn("full", body["error"])
        self.assertGreater(int(response.headers["Retry-After"]), 0)
        self.assertEqual(self.incoming(), [])
        [rejected] = self.capture.named("job_rejected")
        self.assertEqual((rejected["reason"], rejected["job_id"]), ("queue_full", "job-1"))

    def test_no_worker_is_503_with_retry_after_and_the_job_is_not_queued(self):
        self.stub.remove_worker("w0")
        self.stub.advance(75)               # no worker for longer than no_worker_grace_s
        response = self.post_form(forms.process_parts(photos.jpeg()))
        body = self.assert_error(response, 503)
        self.assertIn("no segmentation worker", body["error"])
        self.assertIn("75 s", body["error"])
        self.assertEqual(int(response.headers["Retry-After"]), errors.NO_WORKER_RETRY_AFTER_S)
        self.assertEqual(self.incoming(), [])
        [rejected] = self.capture.named("job_rejected")
        self.assertEqual((rejected["status"], rejected["reason"]), (503, "no_worker"))

    def test_while_the_queue_is_full_the_broker_is_asked_before_the_photo_is_decoded(self):
        self.stub.fill_queue()
        self.assert_error(self.post_form(forms.process_parts(photos.jpeg())), 503)
        # Known full: the next upload costs one "room" question, no decode, no file, no submit.
        response = self.post_form(forms.process_parts(photos.jpeg(), job_id="job-2"))
        body = self.assert_error(response, 503)
        self.assertIn("the queue is full", body["error"])
        self.assertEqual(response.headers["Retry-After"], "10")
        self.assertEqual(self.sent_types(), ["submit", "room"])
        self.assertEqual(self.incoming(), [])
        # Room again (two workers join and take the queued jobs): the upload goes the
        # whole way, and is not asked about again after.
        self.stub.add_worker("w1")
        self.stub.add_worker("w2")
        self.assertEqual(self.post_form(forms.process_parts(photos.jpeg(), job_id="job-3")).code, 202)
        self.assertEqual(self.post_form(forms.process_parts(photos.jpeg(), job_id="job-4")).code, 202)
        self.assertEqual(self.sent_types(), ["submit", "room", "room", "submit", "submit"])

    def test_broker_error_outcome_is_503(self):
        self.stub.journal.fail = True       # the broker cannot record the job
        response = self.post_form(forms.process_parts(photos.jpeg()))
        self.assertIn("cannot record the job", self.assert_error(response, 503)["error"])
        self.assertIn("Retry-After", response.headers)
        self.assertEqual(self.incoming(), [])



class SilentBrokerCase(FrontendTestCase):
    """The broker is connected, then stops answering."""

    # long enough that the connected /stats below is answered on a loaded CI machine
    broker_timeout_s = 1.0

    def setUp(self):
        super().setUp()
        self.assertEqual(self.fetch("/stats").code, 200)  # connected before going silent
        self.stub.pause()


class LateReplyTest(SilentBrokerCase):
    late_grace_s = 10.0

    def test_silent_broker_then_late_accept_keeps_the_photo(self):
        response = self.post_form(forms.process_parts(photos.jpeg()))
        self.assert_error(response, 503)
        self.assertIn("Retry-After", response.headers)
        self.assertEqual(len(self.incoming()), 1)  # outcome unknown yet: the photo stays
        self.stub.resume()                  # the broker accepts the job, late
        self.wait_until(lambda: self.capture.named("job_late_reply"))
        self.assertEqual(len(self.incoming()), 1)
        self.assertTrue(self.capture.named("job_late_reply")[0]["photo_kept"])

    def test_silent_broker_then_late_refusal_deletes_the_photo(self):
        self.assert_error(self.post_form(forms.process_parts(photos.jpeg())), 503)
        self.stub.fill_queue()
        self.stub.resume()                  # the broker refuses the job, late: queue full
        self.wait_until(lambda: self.capture.named("job_late_reply"))
        self.assertEqual(self.incoming(), [])


class NoLateReplyTest(SilentBrokerCase):
    late_grace_s = 0.5

    def test_silent_broker_never_answering_deletes_the_photo_after_grace(self):
        self.assert_error(self.post_form(forms.process_parts(photos.jpeg())), 503)
        self.wait_until(lambda: self.capture.named("job_late_reply"))
        self.assertEqual(self.capture.named("job_late_reply")[0]["outcome"], "no_reply")
        self.assertEqual(self.incoming(), [])


class BrokerDownTest(FrontendTestCase):
    broker_up = False
    broker_timeout_s = 0.4

    def test_unreachable_broker_is_503_and_leaves_nothing(self):
        response = self.post_form(forms.process_parts(photos.jpeg()))
        self.assertIn("not connected", self.assert_error(response, 503)["error"])
        self.assertIn("Retry-After", response.headers)
        self.assertEqual(self.incoming(), [])


class StorageFailureTest(FrontendTestCase):

    def _failing_open(self, code):
        real_open = os.open

        def fake_open(path, flags, *args, **kwargs):
            if flags & os.O_CREAT:
                raise OSError(code, os.strerror(code), str(path))
            return real_open(path, flags, *args, **kwargs)
        return mock.patch.object(files.os, "open", fake_open)

    def test_read_only_folder_is_503_then_recovers(self):
        with self._failing_open(errno.EROFS):
            response = self.post_form(forms.process_parts(photos.jpeg()))
        self.assertIn("cannot be written", self.assert_error(response, 503)["error"])
        self.assertIn("Retry-After", response.headers)
        self.assertEqual(self.sent("submit"), [])
        self.assertEqual(self.post_form(forms.process_parts(photos.jpeg())).code, 202)

    def test_full_disk_is_507_then_recovers(self):
        with self._failing_open(errno.ENOSPC):
            response = self.post_form(forms.process_parts(photos.jpeg()))
        self.assertIn("full", self.assert_error(response, 507)["error"])
        self.assertEqual(self.incoming(), [])
        self.assertEqual(self.post_form(forms.process_parts(photos.jpeg())).code, 202)

    def test_unwritable_incoming_path_is_503_then_recovers(self):
        (self.tmp / "incoming").write_bytes(b"")  # a file where the folder should be
        response = self.post_form(forms.process_parts(photos.jpeg()))
        self.assert_error(response, 503)
        (self.tmp / "incoming").unlink()
        self.assertEqual(self.post_form(forms.process_parts(photos.jpeg())).code, 202)
        self.assertEqual(len(self.incoming()), 1)

    def test_write_failure_after_open_leaves_no_partial_file(self):
        with mock.patch.object(files.os, "fsync", side_effect=OSError(errno.EIO, "I/O")):
            response = self.post_form(forms.process_parts(photos.jpeg()))
        self.assert_error(response, 503)
        self.assertEqual(self.incoming(), [])


class ApiKeyTest(FrontendTestCase):
    settings_overrides: ClassVar[dict[str, Any]] = {"api_key": "s3cret-key-value"}

    def test_process_needs_the_key(self):
        for headers in ({}, {"X-API-Key": "wrong"}, {"X-API-Key": ""}):
            with self.subTest(headers=headers):
                response = self.post_form(forms.process_parts(photos.jpeg()), headers=headers)
                self.assert_error(response, 401)
        self.assertEqual(self.incoming(), [])
        response = self.post_form(forms.process_parts(photos.jpeg()),
                                  headers={"X-API-Key": "s3cret-key-value"})
        self.assertEqual(response.code, 202)

    def test_jobs_need_the_key_health_and_stats_do_not(self):
        self.assert_error(self.fetch("/jobs/job-1", raise_error=False), 401)
        response = self.fetch("/jobs/job-1", headers={"X-API-Key": "s3cret-key-value"},
                              raise_error=False)
        self.assert_error(response, 404)
        for path in ("/health", "/stats", "/openapi.json"):
            self.assertEqual(self.fetch(path, raise_error=False).code, 200, path)

    def test_key_is_never_logged(self):
        self.post_form(forms.process_parts(photos.jpeg()), headers={"X-API-Key": "s3cret-key-value"})
        self.post_form(forms.process_parts(photos.jpeg()), headers={"X-API-Key": "bad-guess-1234"})
        text = repr(self.capture.events)
        self.assertNotIn("s3cret-key-value", text)
        self.assertNotIn("bad-guess-1234", text)


class SlowClientTest(FrontendTestCase):

    def test_trickling_upload_does_not_block_other_requests(self):
        payload = forms.body(*forms.process_parts(photos.jpeg()))
        slow = socket.create_connection(("127.0.0.1", self.get_http_port()))
        self.addCleanup(slow.close)
        slow.sendall(b"POST /process HTTP/1.1\r\nHost: x\r\n"
                     + f"Content-Type: {forms.content_type()}\r\n".encode()
                     + f"Content-Length: {len(payload)}\r\n\r\n".encode() + payload[:100])
        response = self.fetch("/health", raise_error=False)
        self.assertEqual(response.code, 200)
        response = self.post_form(forms.process_parts(photos.jpeg(), job_id="other"))
        self.assertEqual(response.code, 202)


class DecoderFaultTest(FrontendTestCase):

    def test_unexpected_decoder_exception_is_422_not_500(self):
        with mock.patch("frontend.uploads.check_decodable", side_effect=IndexError("bad table")):
            response = self.post_form(forms.process_parts(photos.jpeg()))
        self.assertIn("IndexError", self.assert_error(response, 422)["error"])
        self.assertEqual(self.incoming(), [])

    def test_internal_fault_is_500_json_and_logged_with_the_job(self):
        with mock.patch.object(self.store, "write", side_effect=RuntimeError("bug")):
            response = self.post_form(forms.process_parts(photos.jpeg(), job_id="fault-1"))
        self.assertIn("internal error", self.assert_error(response, 500)["error"])
        [fault] = self.capture.named("internal_error")
        self.assertEqual(fault["job_id"], "fault-1")
