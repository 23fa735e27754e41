"""The uploader: takes finished jobs from the broker, spools them durably, and
delivers every job's masks to the Mask Asset Service exactly once (see
``docs/uploader.md``). Run it with ``python -m uploader``."""
