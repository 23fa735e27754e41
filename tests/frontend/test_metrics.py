"""GET /metrics against a stub broker: the text format, parsed back with
prometheus_client's own parser, and what happens when the broker is silent."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from common import VERSION
from common.histogram import Histogram
from frontend.metrics import FrontendCounters, render
from tests.frontend import photos
from tests.frontend.http_case import FrontendTestCase
from tests.support import forms
from tests.support.stub_broker import StubBroker


def samples(text: str) -> dict[tuple[str, tuple], float]:
    """``{(sample name, sorted labels): value}`` of a /metrics body."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def broker_stats() -> dict:
    """A real broker's stats, with every figure given a value worth rendering."""
    upload, stage = Histogram(), Histogram()
    for seconds in (0.02, 0.3, 7.0):
        upload.observe(seconds)
    stage.observe(0.004)
    return {**StubBroker().stats(), "accepted": 9, "jobs_processed": 5, "retried": 2,
            "failed_by_reason": {"no_person": 2, "attempts_exhausted": 1}, "redelivered": 1,
            "queue_current": 3, "in_flight": 1, "pending_handoff": 0, "uploader_alive": True,
            "segmentation_ready": True, "no_worker_s": 0, "no_worker_grace_s": 60.0,
            "upload_attempts": {"2xx": 5, "5xx": 2, "error": 1}, "upload_retried": 3,
            "dead_lettered": 1, "upload_delivered": 5, "spool_depth": 2, "dead_letters_held": 1,
            "per_worker": {"w0": {"engine": "schp", "precision": "bf16", "backend": "eager",
                                  "busy": True},
                           "w1": {"engine": "parser", "precision": "fp32", "backend": "default",
                                  "busy": False}},
            "timings": {"upload": upload.snapshot(), "stage_forward": stage.snapshot(),
                        "queue_wait": stage.snapshot()}}


def test_every_figure_of_the_stats_becomes_a_metric():
    got = samples(render(broker_stats(), FrontendCounters())[0].decode())
    assert got[("qmc_broker_up", ())] == 1
    assert got[("qmc_jobs_accepted_total", ())] == 9
    assert got[("qmc_jobs_done_total", ())] == 5
    assert got[("qmc_jobs_failed_total", (("reason", "no_person"),))] == 2
    assert got[("qmc_jobs_failed_total", (("reason", "attempts_exhausted"),))] == 1
    assert got[("qmc_jobs_redelivered_total", ())] == 1
    assert got[("qmc_jobs_requeued_total", ())] == 2
    assert got[("qmc_queue_depth", ())] == 3 and got[("qmc_queue_max", ())] == 100
    assert got[("qmc_jobs_in_flight", ())] == 1
    assert got[("qmc_workers_connected", ())] == 2 and got[("qmc_workers_busy", ())] == 1
    assert got[("qmc_workers_alive", (("engine", "schp"),))] == 1
    assert got[("qmc_workers_alive", (("engine", "parser"),))] == 1
    assert got[("qmc_upload_attempts_total", (("status_class", "5xx"),))] == 2
    assert got[("qmc_upload_retries_total", ())] == 3
    assert got[("qmc_upload_dead_letters_total", ())] == 1
    assert got[("qmc_upload_spool_depth", ())] == 2
    info = {labels for (name, labels) in got if name == "qmc_build_info"}
    assert info == {(("backend", "eager"), ("engine", "schp"), ("precision", "bf16"),
                     ("version", VERSION)),
                    (("backend", "default"), ("engine", "parser"), ("precision", "fp32"),
                     ("version", VERSION))}
    upload = ("stage", "upload")
    assert got[("qmc_stage_seconds_count", (upload,))] == 3
    assert abs(got[("qmc_stage_seconds_sum", (upload,))] - 7.32) < 1e-9
    assert got[("qmc_stage_seconds_bucket", (("le", "0.025"), upload))] == 1
    assert got[("qmc_stage_seconds_bucket", (("le", "0.5"), upload))] == 2
    assert got[("qmc_stage_seconds_bucket", (("le", "+Inf"), upload))] == 3
    assert got[("qmc_stage_seconds_count", (("stage", "forward"),))] == 1
    assert got[("qmc_queue_wait_seconds_count", ())] == 1
    assert ("qmc_job_end_to_end_seconds_count", ()) not in got  # nothing delivered yet


def test_junk_in_the_stats_is_left_out_not_fatal():
    stats = {"accepted": "many", "failed_by_reason": {"x": None}, "per_worker": [1],
             "timings": {"upload": {"le": [1.0], "counts": [5], "sum": 1.0, "count": 2}}}
    got = samples(render(stats, FrontendCounters())[0].decode())
    assert ("qmc_jobs_accepted_total", ()) not in got
    assert not [k for k in got if k[0].startswith("qmc_stage_seconds")]
    assert got[("qmc_build_info", (("backend", "none"), ("engine", "none"),
                                   ("precision", "none"), ("version", VERSION)))] == 1


class MetricsEndpointTest(FrontendTestCase):

    def test_scrape_counts_refusals_by_status_and_reason(self):
        self.post_form(forms.process_parts(photos.jpeg(), job_id="m-1"))
        self.post_form(forms.process_parts(photos.jpeg(), job_id="m-1"))   # duplicate
        self.post_form(forms.process_parts(b"not a photo", job_id="m-2"))
        response = self.fetch("/metrics")
        self.assertEqual(response.code, 200)
        self.assertTrue(response.headers["Content-Type"].startswith("text/plain; version=0.0.4"))
        got = samples(response.body.decode())
        refused = {labels: v for (name, labels), v in got.items()
                   if name == "qmc_jobs_refused_total"}
        self.assertEqual(len(refused), 1)
        [(labels, value)] = refused.items()
        self.assertEqual((dict(labels)["status"], value), ("415", 1))
        self.assertEqual(got[("qmc_jobs_duplicate_total", ())], 1)
        self.assertEqual(got[("qmc_jobs_accepted_total", ())], 1)   # the broker's count
        self.assertEqual(got[("qmc_workers_alive", (("engine", "schp"),))], 1)

    def test_openmetrics_when_the_scraper_asks_for_it(self):
        response = self.fetch("/metrics", headers={"Accept": "application/openmetrics-text"})
        self.assertTrue(response.headers["Content-Type"].startswith("application/openmetrics-text"))
        self.assertTrue(response.body.rstrip().endswith(b"# EOF"))


class MetricsWithoutBrokerTest(FrontendTestCase):
    broker_up = False
    broker_timeout_s = 0.3

    def test_silent_broker_still_scrapes_with_broker_up_zero(self):
        response = self.fetch("/metrics")
        self.assertEqual(response.code, 200)
        got = samples(response.body.decode())
        self.assertEqual(got[("qmc_broker_up", ())], 0)
        self.assertNotIn(("qmc_queue_depth", ()), got)
