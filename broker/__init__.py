"""The ZeroMQ broker: strict FIFO dispatch to workers, a journal on disk, hand-off to the uploader.

Layout:

- :mod:`broker.jobs`    the journalled state (jobs, queue, deliveries, counters), changed only
                        by applying journal records; replay and live operation share that code.
- :mod:`broker.peers`   the live worker and uploader registries (not journalled).
- :mod:`broker.state`   the broker core: every decision (FIFO dispatch, expiry, retries,
                        duplicates) as a pure state machine with no sockets and no clock reads.
- :mod:`broker.journal` the append-only journal file, replay and compaction.
- :mod:`broker.files`   the only code that touches TEMP_FOLDER (masks, photos).
- :mod:`broker.server`  the thin socket loop around the core.
"""
