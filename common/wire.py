"""The wire format between the processes: versioned msgpack maps over ZeroMQ.

Topology (the broker binds every socket; everyone else connects)::

    front end  DEALER --> ROUTER  broker.frontend_endpoint   request / reply
    workers    DEALER --> ROUTER  broker.worker_bind         load-balancing + heartbeats
    uploader   DEALER --> ROUTER  broker.uploader_endpoint   hand-off + job states

Every message is ONE ZeroMQ frame holding a msgpack map with at least
``"v"`` (:data:`VERSION`) and ``"type"``. ROUTER sockets see the peer's routing
id as an extra first frame; it never appears inside the map.

Message types, by direction
---------------------------
front end -> broker (each carries ``"req"``, echoed in the reply):
    ``submit``   {job: Job}                  -> ``submitted`` {outcome, state, queue_size, queue_max}
                 outcome: "accepted" | "duplicate" | "queue_full" | "no_worker" | "error"
                 (no_worker and error carry "error": text)
    ``job``      {job_id}                    -> ``job`` {record: JobRecord | None}
    ``stats``    {}                          -> ``stats`` {stats: Stats}
    ``room``     {}                          -> ``room`` {open, queue_size, queue_max}
                 asked only while the last answer said the queue was full, so a burst's
                 excess is refused before its photos are decoded and stored

worker -> broker:
    ``ready``     {worker: WorkerInfo}        idle, wants one job
    ``heartbeat`` {worker: WorkerInfo}        alive (also while busy)
    ``result``    {job_id, attempt, masks: {name: png bytes}, engine, timings}
                  timings: {decode_ms, process_ms, stages_ms: {stage: ms}}, stages from
                  :data:`STAGES`
    ``failed``    {job_id, attempt, reason, detail, retryable}
    ``disconnect`` {}                         leaving; a running job (if any) goes back
broker -> worker:
    ``job``       {job: Job, image: bytes | None, deadline_s}
                  ``image`` is inline only for workers whose info says inline_images
    ``heartbeat`` {}

uploader -> broker:
    ``ready``     {counters}                  connected / reconnected
    ``heartbeat`` {counters, timings, spool}  counters: :data:`UPLOADER_COUNTERS`; timings:
                                              {"upload": histogram (common.histogram)};
                                              spool: {depth, dead}
    ``ack``       {job_id}                    job durably spooled; broker forgets the hand-off
    ``state``     {job_id, state, reason, detail}   "uploading" | "done" | "failed"
broker -> uploader:
    ``deliver``   {job: Job, masks: {name: absolute path}}
    ``heartbeat`` {}

A Job (the unit that is queued, journalled and dispatched)::

    {"job_id", "user_id", "provider", "image_path", "submitted_at", "attempt"}

``image_path`` is an absolute path under TEMP_FOLDER written by the front end.
Mask names are :data:`MASK_NAMES` (``seg_map`` only when enabled).
"""

from __future__ import annotations

from typing import Any

import msgpack

#: Schema version carried by every message; a peer refuses other versions.
VERSION = 1

#: Job states as reported by GET /jobs/{job_id}. The uploader reports the last three; a job
#: ends in one of the last two (a dead letter that ``uploader redrive`` delivers goes on to done).
STATES = ("queued", "processing", "uploading", "done", "failed")
UPLOAD_STATES, FINAL_STATES = STATES[2:], STATES[3:]

#: The uploader's counters (``ready`` / ``heartbeat``): its HTTP attempts count by the answer's
#: status class (``error``: no answer).
ATTEMPT_CLASSES = ("2xx", "3xx", "4xx", "5xx", "error")
UPLOADER_COUNTERS = ("delivered", "retried", "dead_lettered",
                     *(f"attempts_{c}" for c in ATTEMPT_CLASSES))

#: Mask file stems, as uploaded (``<name>.png``).
UPPER, LOWER, SEG_MAP = "upper_body_mask", "lower_body_mask", "seg_map"
MASK_NAMES = (UPPER, LOWER, SEG_MAP)

#: Worker stages timed for every result (``timings.stages_ms``): ``forward`` is the
#: engine's model work (every engine stage that is not pre- or post-processing).
STAGES = ("decode", "preprocess", "forward", "postprocess", "refine", "encode")

#: Keys every Job map must have.
JOB_FIELDS = ("job_id", "user_id", "provider", "image_path", "submitted_at", "attempt")

#: Fields each message type must carry (besides "v" and "type").
REQUIRED: dict[str, tuple[str, ...]] = {
    "submit": ("req", "job"),
    "submitted": ("req", "outcome"),
    "job": (),  # request {req, job_id}, reply {req, record}, or dispatch {job, image, deadline_s}
    "stats": ("req",),
    "room": ("req",),
    "ready": (),
    "heartbeat": (),
    "result": ("job_id", "attempt", "masks"),
    "failed": ("job_id", "attempt", "reason"),
    "disconnect": (),
    "ack": ("job_id",),
    "state": ("job_id", "state"),
    "deliver": ("job", "masks"),
}


class WireError(ValueError):
    """A frame that is not a valid message of this schema version."""


def encode(msg_type: str, **fields: Any) -> bytes:
    """One frame: ``{"v": VERSION, "type": msg_type, **fields}`` as msgpack."""
    if msg_type not in REQUIRED:
        raise WireError(f"unknown message type {msg_type!r}")
    return msgpack.packb({"v": VERSION, "type": msg_type, **fields}, use_bin_type=True)


def decode(frame: bytes) -> dict[str, Any]:
    """Parse and check one frame; raises :class:`WireError` on anything malformed."""
    msg = unpack(frame)
    if not isinstance(msg, dict):
        raise WireError("message is not a map")
    if msg.get("v") != VERSION:
        raise WireError(f"unsupported schema version {msg.get('v')!r} (this peer speaks {VERSION})")
    msg_type = msg.get("type")
    if msg_type not in REQUIRED:
        raise WireError(f"unknown message type {msg_type!r}")
    missing = [f for f in REQUIRED[msg_type] if f not in msg]
    if missing:
        raise WireError(f"{msg_type} message lacks {', '.join(missing)}")
    if isinstance(msg.get("job"), dict):
        missing = [f for f in JOB_FIELDS if f not in msg["job"]]
        if missing:
            raise WireError(f"job lacks {', '.join(missing)}")
    return msg


def make_job(job_id: str, user_id: str, provider: str, image_path: str,
             submitted_at: float, attempt: int = 0) -> dict[str, Any]:
    """A Job map (see the module docstring)."""
    return {"job_id": job_id, "user_id": user_id, "provider": provider,
            "image_path": image_path, "submitted_at": submitted_at, "attempt": attempt}


def pack(obj: Any) -> bytes:
    """msgpack for non-message records (the broker journal, the uploader spool)."""
    return msgpack.packb(obj, use_bin_type=True)


def unpack(data: bytes) -> Any:
    """The object :func:`pack` wrote; raises :class:`WireError` on malformed bytes."""
    try:
        return msgpack.unpackb(data, raw=False, strict_map_key=True)
    except (ValueError, TypeError, msgpack.UnpackException) as exc:  # what msgpack raises
        raise WireError(f"not msgpack: {exc}") from None
