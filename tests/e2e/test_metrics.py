"""End to end: after a few real jobs, GET /metrics (parsed with prometheus_client's own
parser) agrees with GET /stats, and every process logs only JSON lines."""

import json

from prometheus_client.parser import text_string_to_metric_families

from segworker.precision import choose_precision, cpu_flags
from tests.support.procs import wait_for
from tests.support.service import no_person_photo, person_photo


def scrape(service) -> dict[tuple[str, tuple], float]:
    resp = service.get("/metrics")
    assert resp.status_code == 200
    assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    out = {}
    for family in text_string_to_metric_families(resp.text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_metrics_match_stats_after_a_few_jobs(service):
    photo = person_photo()
    for i in range(3):
        assert service.post_photo(f"m-{i}", photo).status_code == 202
    assert service.post_photo("m-coffee", no_person_photo()).status_code == 202
    assert service.post_photo("m-0", photo).status_code == 200               # duplicate
    assert service.post_photo("m-bad", b"GIF89a not really").status_code == 415
    service.wait_delivered(["m-0", "m-1", "m-2"])
    service.wait_state("m-coffee", ("failed",))
    for i in range(3):
        service.wait_state(f"m-{i}", ("done",))
    # the uploader's figures reach the broker with its next heartbeat
    wait_for(lambda: service.stats().get("upload_attempts", {}).get("2xx") == 3
             and service.stats()["timings"].get("upload", {}).get("count") == 3,
             20, what="uploader figures in /stats")

    stats, got = service.stats(), scrape(service)
    assert got[("qmc_broker_up", ())] == 1
    assert got[("qmc_jobs_accepted_total", ())] == stats["accepted"] == 4
    assert got[("qmc_jobs_done_total", ())] == stats["jobs_processed"] == 3
    failed = {dict(k[1])["reason"]: v for k, v in got.items() if k[0] == "qmc_jobs_failed_total"}
    assert failed == stats["failed_by_reason"] == {"no_person": 1}
    assert sum(failed.values()) - got[("qmc_jobs_redelivered_total", ())] == stats["failed"]
    assert got[("qmc_jobs_requeued_total", ())] == stats["retried"]
    assert got[("qmc_queue_depth", ())] == stats["queue_current"] == 0
    assert got[("qmc_queue_max", ())] == stats["queue_max"] == 100
    assert got[("qmc_jobs_in_flight", ())] == stats["in_flight"] == 0
    assert got[("qmc_workers_alive", (("engine", "parser"),))] == stats["workers"] == 2
    assert got[("qmc_uploader_alive", ())] == 1 and got[("qmc_segmentation_ready", ())] == 1
    assert got[("qmc_upload_attempts_total", (("status_class", "2xx"),))] == 3
    assert got[("qmc_uploads_delivered_total", ())] == stats["upload_delivered"] == 3
    assert got[("qmc_upload_retries_total", ())] == stats["upload_retried"] == 0
    assert got[("qmc_upload_dead_letters_total", ())] == stats["dead_lettered"] == 0
    assert got[("qmc_upload_spool_depth", ())] == stats["spool_depth"] == 0
    refused = {k[1]: v for k, v in got.items() if k[0] == "qmc_jobs_refused_total"}
    assert refused == {(("reason", "unsupported_format"), ("status", "415")): 1}
    assert got[("qmc_jobs_duplicate_total", ())] == 1
    # histograms: one decode/forward/refine/encode per result, one upload per attempt,
    # one queue wait per job dispatched, one end-to-end time per delivery
    for stage in ("decode", "forward", "refine", "encode", "upload"):
        key = "upload" if stage == "upload" else f"stage_{stage}"
        assert got[("qmc_stage_seconds_count", (("stage", stage),))] == \
            stats["timings"][key]["count"] == 3, stage
        assert got[("qmc_stage_seconds_bucket", (("le", "+Inf"), ("stage", stage)))] == 3
    assert got[("qmc_queue_wait_seconds_count", ())] == stats["timings"]["queue_wait"]["count"] == 4
    assert got[("qmc_job_end_to_end_seconds_count", ())] == 3
    assert 0 < got[("qmc_job_end_to_end_seconds_sum", ())] == \
        stats["timings"]["end_to_end"]["sum"]
    info = [dict(k[1]) for k in got if k[0] == "qmc_build_info"]
    # PARSER_PRECISION=auto: bf16 on a CPU with bf16 matrix units, else fp32
    expected = choose_precision("auto", "cpu", cpu_flags=cpu_flags()).value
    assert [(i["engine"], i["precision"]) for i in info] == [("parser", expected)]
    assert isinstance(stats["uptime_sec"], int)

    # every line every process wrote is one JSON object (MediaPipe's notices included)
    for log in service.logs.glob("*.log"):
        for line in log.read_text().splitlines():
            assert isinstance(json.loads(line), dict), (log.name, line)
    worker_log = service.log_path("segworker:0").read_text()
    assert '"event": "native_log"' in worker_log
