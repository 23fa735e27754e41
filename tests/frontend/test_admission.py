"""frontend.admission: the rule, the shared room question, and the handler holding uploads."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
import unittest
from typing import Any
from unittest import mock

from tornado.routing import PathMatches

from frontend.admission import Admission, QueueFull, QueueView, decide
from tests.frontend import photos
from tests.frontend.http_case import FrontendTestCase
from tests.support import forms


class RoomAnswers:
    """A ``room`` request that answers from a script and counts the questions."""

    def __init__(self, *replies: dict[str, Any] | Exception) -> None:
        self.replies = list(replies)
        self.asked = 0

    async def __call__(self) -> dict[str, Any]:
        self.asked += 1
        await asyncio.sleep(0.01)
        reply = self.replies.pop(0)
        if isinstance(reply, Exception):
            raise reply
        return reply


def accepted(size: int, limit: int) -> dict[str, Any]:
    return {"outcome": "accepted", "queue_size": size, "queue_max": limit}


class DecideTest(unittest.TestCase):

    def test_the_rule(self):
        cases = [
            (QueueView(), 3, "admit"),          # nothing known yet: a few learn the figures
            (QueueView(), 4, "wait"),
            (QueueView(3, 10), 6, "admit"),     # 3 queued + 6 pending + this one fit in 10
            (QueueView(3, 10), 7, "wait"),      # the pending ones may fill it
            (QueueView(10, 10), 0, "ask"),      # full at the last answer; it may have drained
            (QueueView(12, 10), 0, "ask"),
        ]
        for view, pending, expected in cases:
            with self.subTest(view=view, pending=pending):
                self.assertEqual(decide(view, pending), expected)

    def test_a_full_answer_wins_over_its_figures(self):
        view = QueueView()
        view.note({"outcome": "queue_full", "queue_size": 4, "queue_max": 20})
        self.assertEqual((view.size, view.limit), (20, 20))
        view.note({"open": False, "queue_size": 2, "queue_max": 20})   # a stopping broker
        self.assertEqual(decide(view, 0), "ask")
        view.note({"open": True, "queue_size": 2, "queue_max": 20})
        self.assertEqual(decide(view, 0), "admit")

    def test_replies_without_figures_change_nothing(self):
        view = QueueView(5, 20)
        view.note({"outcome": "error", "error": "journal write failed"})
        view.note({"queue_size": "5", "queue_max": None})
        self.assertEqual((view.size, view.limit), (5, 20))


class AdmissionTest(unittest.IsolatedAsyncioTestCase):

    async def test_a_burst_admits_the_room_and_refuses_the_rest_on_one_question(self):
        room = RoomAnswers({"open": False, "queue_size": 3, "queue_max": 3})
        admission = Admission(room)
        admission.view.note(accepted(0, 3))
        tasks = [asyncio.ensure_future(admission.enter()) for _ in range(10)]
        await asyncio.sleep(0.02)
        admitted = [t for t in tasks if t.done()]
        self.assertEqual((len(admitted), admission.pending), (3, 3))
        for size in (1, 2, 3):            # the three admitted are accepted, one by one
            admission.leave(accepted(size, 3))
            await asyncio.sleep(0.005)
        results = await asyncio.gather(*tasks, return_exceptions=True)
        refused = [r for r in results if isinstance(r, QueueFull)]
        self.assertEqual(len(refused), 7)
        self.assertEqual(room.asked, 1)
        self.assertEqual(admission.pending, 0)

    async def test_a_drained_queue_admits_as_many_as_the_room_answer_allows(self):
        room = RoomAnswers({"open": True, "queue_size": 1, "queue_max": 3})
        admission = Admission(room)
        admission.view.note({"outcome": "queue_full", "queue_size": 3, "queue_max": 3})
        tasks = [asyncio.ensure_future(admission.enter()) for _ in range(4)]
        await asyncio.sleep(0.05)
        self.assertEqual(sum(t.done() for t in tasks), 2)   # 1 queued + 2 = the limit
        self.assertEqual((room.asked, admission.pending), (1, 2))
        for task in tasks:
            task.cancel()

    async def test_a_held_upload_asks_the_broker_after_the_hold_limit(self):
        # A pending upload that never finishes (a stuck decode) cannot hold the rest forever.
        room = RoomAnswers({"open": True, "queue_size": 0, "queue_max": 3})
        admission = Admission(room, hold_limit_s=0.05)
        admission.view.note(accepted(0, 1))
        await admission.enter()                       # takes the room, and never leaves
        await asyncio.wait_for(admission.enter(), 2)
        self.assertEqual((room.asked, admission.pending), (1, 2))

    async def test_a_broker_error_reaches_every_upload_that_asked(self):
        room = RoomAnswers(ConnectionError("broker down"), {"open": True, "queue_size": 0,
                                                           "queue_max": 3})
        admission = Admission(room)
        admission.view.note({"outcome": "queue_full", "queue_size": 3, "queue_max": 3})
        results = await asyncio.gather(admission.enter(), admission.enter(),
                                       return_exceptions=True)
        self.assertTrue(all(isinstance(r, ConnectionError) for r in results))
        self.assertEqual((room.asked, admission.pending), (1, 0))
        await admission.enter()                       # the next question is a new one
        self.assertEqual((room.asked, admission.pending), (2, 1))


class HeldUploadTest(FrontendTestCase):

    queue_max = 3

    def admission(self) -> Admission:
        [rule] = [r for r in self._app.wildcard_router.rules
                  if isinstance(r.matcher, PathMatches)
                  and r.matcher.regex.pattern.startswith("/process")]
        return rule.target_kwargs["admission"]

    def queue_one_more(self, job_id: str) -> dict[str, Any]:
        """Queue a job from elsewhere (another front end); the broker's reply."""
        return self.stub.submit(job_id)

    def test_an_upload_held_behind_a_pending_one_is_refused_unread_once_the_queue_is_full(self):
        self.admission().view.note(self.queue_one_more("other-1"))
        self.admission().view.note(self.queue_one_more("other-2"))   # room for one more job
        gate = threading.Event()
        self.addCleanup(gate.set)
        for _ in range(2):                  # both photo threads busy: the first upload waits
            self.executor.submit(gate.wait, 10)
        first = self.http_client.fetch(
            self.get_url("/process"), method="POST",
            body=forms.body(*forms.process_parts(photos.jpeg(), job_id="job-1")),
            headers={"Content-Type": forms.content_type()}, raise_error=False)
        self.wait_until(lambda: self.executor._work_queue.qsize() == 1)
        second = self.http_client.fetch(
            self.get_url("/process"), method="POST",
            body=forms.body(*forms.process_parts(photos.jpeg(), job_id="job-2")),
            headers={"Content-Type": forms.content_type()}, raise_error=False)
        self.io_loop.run_sync(lambda: asyncio.sleep(0.2))
        self.assertEqual(self.sent_types(), [])       # the second is held, not decoded
        self.assertEqual(self.executor._work_queue.qsize(), 1)
        self.queue_one_more("other-3")                # another front end takes the last place
        gate.set()
        for response in (self.io_loop.run_sync(lambda: first),
                         self.io_loop.run_sync(lambda: second)):
            self.assertIn("the queue is full", self.assert_error(response, 503)["error"])
        # One submit for the first; the second cost one room question, no decode, no file.
        self.assertEqual(self.sent_types(), ["submit", "room"])
        self.assertEqual(self.incoming(), [])
        rejected = self.capture.named("job_rejected")
        self.assertEqual(sorted(r["job_id"] for r in rejected), ["job-1", "job-2"])

    def test_a_slow_body_gives_its_place_back_and_asks_again_when_complete(self):
        self.admission().view.note(self.queue_one_more("other-1"))
        self.admission().view.note(self.queue_one_more("other-2"))   # room for one more job
        payload = forms.body(*forms.process_parts(photos.jpeg(), job_id="slow"))
        slow = socket.create_connection(("127.0.0.1", self.get_http_port()))
        self.addCleanup(slow.close)
        with mock.patch("frontend.process_handler.SLOW_BODY_S", 0.3):
            slow.sendall(b"POST /process HTTP/1.1\r\nHost: x\r\n"
                         + f"Content-Type: {forms.content_type()}\r\n".encode()
                         + f"Content-Length: {len(payload)}\r\n\r\n".encode() + payload[:100])
            self.wait_until(lambda: self.admission().pending == 1)
            started = time.monotonic()
            response = self.post_form(forms.process_parts(photos.jpeg(), job_id="fast"))
        self.assertEqual(response.code, 202)           # not held until the slow body ends
        self.assertGreaterEqual(time.monotonic() - started, 0.25)
        self.assertEqual(self.admission().pending, 0)
        # The slow upload asks again once its body is in: the fast one took the place.
        slow.sendall(payload[100:])
        slow.setblocking(False)
        answer = bytearray()

        def answered() -> bool:       # read while the IOLoop runs (it serves this thread)
            try:
                answer.extend(slow.recv(4096))
            except BlockingIOError:
                pass
            return b"\r\n\r\n" in answer
        self.wait_until(answered)
        self.assertTrue(answer.startswith(b"HTTP/1.1 503"), bytes(answer[:40]))
        self.assertEqual(self.sent_types(), ["submit", "room"])
        self.assertEqual([m["job"]["job_id"] for m in self.sent("submit")], ["fast"])
