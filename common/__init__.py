"""What several processes share: configuration, the wire format, job ids,
photo decoding and structured logging. Nothing here imports a process package."""
