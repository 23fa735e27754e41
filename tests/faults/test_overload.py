"""A burst far beyond the queue: the excess is refused cleanly, every 202 is honoured."""

from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor

from PIL import Image

from tests.support.images import encode
from tests.support.ledger import JobLedger
from tests.support.service import person_photo
from tests.support.trees import start_without_workers

#: Requests in the burst, and the queue limit they hit.
BURST, QUEUE_MAX = 1000, 100
#: Requests in flight at once.
CONCURRENCY = 16


def small_photo() -> bytes:
    """The astronaut at 128 x 128 (about 8 kB): cheap to send a thousand times."""
    return encode(Image.open(io.BytesIO(person_photo())).resize((128, 128)), "JPEG", quality=85)


def test_burst_of_1000_requests_at_a_queue_of_100(make_tree):
    # No worker yet: nothing leaves the queue while the burst arrives.
    tree = start_without_workers(make_tree(workers=2, start=False,
                                           QUEUE_MAX_SIZE=str(QUEUE_MAX)))
    book = JobLedger(tree)
    photo = small_photo()
    with ThreadPoolExecutor(CONCURRENCY) as pool:
        answers = list(pool.map(lambda i: book.post(f"burst-{i:04d}", photo),
                                range(BURST)))

    assert all(a is not None for a in answers), "a request got no answer"
    statuses = sorted({a.status_code for a in answers})
    assert statuses == [202, 503], statuses
    refused = [a for a in answers if a.status_code == 503]
    assert len(book.accepted) == QUEUE_MAX and len(refused) == BURST - QUEUE_MAX
    assert book.answers == {202: QUEUE_MAX, 503: BURST - QUEUE_MAX}
    for answer in refused:
        assert answer.headers["Retry-After"] == "10"
        assert answer.json()["error"] == (f"the queue is full ({QUEUE_MAX} of {QUEUE_MAX} "
                                          "jobs); retry later")
    stats = tree.stats()
    assert (stats["queue_current"], stats["accepted"]) == (QUEUE_MAX, QUEUE_MAX)
    # Nothing of the refused requests is left behind in TEMP_FOLDER.
    incoming = list((tree.root / "tmp" / "incoming").iterdir())
    assert len(incoming) == QUEUE_MAX

    tree.start_worker(0)
    tree.start_worker(1)
    tally = book.settle(timeout=180)
    assert tally.accepted == QUEUE_MAX
    assert tally.delivered + len(tally.failed) == QUEUE_MAX
