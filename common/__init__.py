"""What several processes share: configuration, the wire format, job ids,
photo decoding, structured logging, process start-up and durable owner-only
files. Nothing here imports a process package."""
