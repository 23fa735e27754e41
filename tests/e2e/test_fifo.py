"""Strict FIFO across real workers: start order equals submission order."""

from tests.support.service import ServiceTree, person_photo


def test_two_workers_start_twenty_jobs_in_submission_order(tmp_path):
    tree = ServiceTree(tmp_path, workers=2)
    try:
        tree.start("broker")
        tree.start("uploader")
        tree.start("frontend")
        tree.wait_http()
        photo = person_photo()
        job_ids = [f"fifo-{i:02d}" for i in range(20)]
        for job_id in job_ids:  # all queued before any worker exists
            assert tree.post_photo(job_id, photo).status_code == 202
        assert tree.stats()["queue_current"] == 20
        tree.start_worker(0)
        tree.start_worker(1)
        tree.wait_delivered(job_ids, timeout=180)

        records = [tree.wait_state(j, ("done",)) for j in job_ids]
        started = sorted(records, key=lambda r: r["started_at"])
        assert [r["job_id"] for r in started] == job_ids
        assert {r["worker"] for r in records} and len({r["worker"] for r in records}) == 2
        assert all(r["attempts"] == 1 for r in records)
        assert sorted(tree.receiver.delivered_job_ids()) == job_ids  # each exactly once
        assert tree.stats()["jobs_processed"] == 20
    finally:
        tree.close()
