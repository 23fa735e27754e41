"""The ZeroMQ broker: strict FIFO dispatch to workers, a journal on disk, hand-off to the uploader.

Layout:

- :mod:`broker.jobs`    the journalled state (jobs, queue, deliveries, counters), changed only
                        by applying journal records; replay and live operation share that code.
- :mod:`broker.peers`   the live worker and uploader registries (not journalled).
- :mod:`broker.protocol` what the core and the server exchange: :class:`Out` frames, Storage.
- :mod:`broker.state`   the broker core: every decision as a pure state machine (no sockets, no
                        clock reads), with :mod:`broker.handoff` (uploader) and :mod:`broker.stats`.
- :mod:`broker.journal` the append-only journal file, replay and compaction.
- :mod:`broker.files`   the only code that touches TEMP_FOLDER (masks, photos).
- :mod:`broker.server`  the thin socket loop around the core.
"""
