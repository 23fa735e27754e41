"""End to end: real processes, a real photo, masks at the stand-in asset service."""

import numpy as np
from PIL import Image

from tests.support.images import encode
from tests.support.procs import wait_for
from tests.support.service import SECRET, mask_of, no_person_photo, person_photo


def test_photo_becomes_two_masks_at_the_asset_service(service):
    photo = person_photo()
    resp = service.post_photo("e2e-job-1", photo, user_id="user-7")
    assert resp.status_code == 202
    assert resp.json() == {"status": "accepted", "queued": True, "job_id": "e2e-job-1",
                           "message": "Job added to Qwen mask queue"}
    service.wait_delivered(["e2e-job-1"])

    [upload] = [u for u in service.receiver.uploads if u["job_id"] == "e2e-job-1"]
    assert upload["auth_ok"] and upload["signature_ok"]
    assert upload["headers"]["Idempotency-Key"] == "e2e-job-1"
    assert (upload["user_id"], upload["provider"]) == ("user-7", "qwen")
    upper = mask_of(upload["files"]["upper_body_mask"])
    lower = mask_of(upload["files"]["lower_body_mask"])
    assert upper.shape == lower.shape == (512, 512)  # the photo's size
    # The astronaut's suit fills the lower left of the frame: the upper mask covers
    # the suit's chest and sleeve, not her face or the background above; the lower
    # mask (no legs in the photo) is empty or tiny. (The parser also puts the helmet
    # she holds on the right in the upper mask: docs/parser.md, limits.)
    assert upper[230:450, 60:260].mean() > 0.9
    assert upper[:140].mean() < 0.01 and upper[60:200, 170:300].mean() < 0.15
    assert lower.mean() < 0.02

    record = service.wait_state("e2e-job-1", ("done",))
    assert record["user_id"] == "user-7"
    assert record["submitted_at"] <= record["started_at"] <= record["finished_at"]
    stats = service.stats()
    assert stats["jobs_processed"] == 1 and stats["failed"] == 0
    assert stats["workers"] == 2 and stats["queue_current"] == 0
    # Delivered jobs leave nothing behind in TEMP_FOLDER.
    temp = service.root / "tmp"
    wait_for(lambda: not [p for p in temp.rglob("*") if p.is_file()], 10,
             what="temp files cleaned up")
    assert SECRET not in "".join(p.read_text(errors="replace")
                                 for p in service.logs.glob("*.log"))


def test_repeated_job_id_is_not_queued_twice(service):
    photo = person_photo()
    first = service.post_photo("e2e-dup", photo)
    second = service.post_photo("e2e-dup", photo)
    assert first.status_code == 202
    assert second.status_code == 200 and second.json()["queued"] is False
    service.wait_delivered(["e2e-dup"])
    service.wait_state("e2e-dup", ("done",))
    assert service.receiver.delivered_job_ids().count("e2e-dup") == 1


def test_photo_without_a_person_fails_with_no_person(service):
    assert service.post_photo("e2e-coffee", no_person_photo()).status_code == 202
    record = service.wait_state("e2e-coffee", ("failed",))
    assert record["reason"] == "no_person"
    assert "e2e-coffee" not in service.receiver.delivered_job_ids()
    assert service.stats()["failed"] == 1


def test_health_and_stats_report_real_figures(service):
    health = service.get("/health").json()
    assert health["status"] == "ok" and health["segmentation_ready"] is True
    assert health["engine"] == "parser" and health["queue_size"] == 0
    stats = service.stats()
    for key in ("queue_max", "queue_current", "workers", "jobs_processed", "uptime_sec"):
        assert key in stats
    assert stats["queue_max"] == 100 and stats["uptime_sec"] >= 0
    assert len(stats["per_worker"]) == 2


def test_rotated_grayscale_photo_gives_masks_in_displayed_orientation(service):
    from skimage import data
    gray = Image.fromarray(data.astronaut()).convert("L")
    sideways = gray.transpose(Image.Transpose.ROTATE_90)  # stored on its side...
    exif = Image.Exif()
    exif[0x0112] = 6  # ...and EXIF says: rotate 90 degrees clockwise to display
    photo = encode(sideways.crop((0, 0, 512, 400)), "JPEG", exif=exif.tobytes())
    assert service.post_photo("e2e-rotated", photo).status_code == 202
    service.wait_delivered(["e2e-rotated"])
    [upload] = [u for u in service.receiver.uploads if u["job_id"] == "e2e-rotated"]
    upper = mask_of(upload["files"]["upper_body_mask"])
    assert upper.shape == (512, 400)  # displayed: 400 wide, 512 tall
    assert np.count_nonzero(upper) > 0
