"""What several processes share: configuration, the wire format, job ids,
photo decoding, structured logging, process start-up and durable owner-only
files. Nothing here imports a process package."""

#: The service's version (the /metrics info metric); pyproject.toml carries the same.
VERSION = "0.1.0"
