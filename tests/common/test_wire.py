"""The versioned msgpack wire format."""

import msgpack
import pytest

from common import wire


def test_round_trip_keeps_fields_and_bytes():
    job = wire.make_job("job-1", "user-1", "qwen", "/tmp/x.png", 12.5)
    frame = wire.encode("deliver", job=job, masks={wire.UPPER: "/a.png"})
    msg = wire.decode(frame)
    assert msg["type"] == "deliver" and msg["v"] == wire.VERSION
    assert msg["job"] == job
    raw = wire.decode(wire.encode("result", job_id="j", attempt=1, masks={wire.UPPER: b"\x89PNG"}))
    assert raw["masks"][wire.UPPER] == b"\x89PNG"


@pytest.mark.parametrize("frame, why", [
    (b"\xc1garbage", "not msgpack"),
    (msgpack.packb([1, 2]), "not a map"),
    (msgpack.packb({"v": 99, "type": "ready"}), "unsupported schema version"),
    (msgpack.packb({"v": wire.VERSION, "type": "launch"}), "unknown message type"),
    (msgpack.packb({"v": wire.VERSION, "type": "ack"}), "lacks job_id"),
    (msgpack.packb({"v": wire.VERSION, "type": "submit", "req": 1, "job": {"job_id": "x"}}),
     "job lacks"),
])
def test_malformed_frames_are_refused_with_a_reason(frame, why):
    with pytest.raises(wire.WireError, match=why):
        wire.decode(frame)


def test_encode_refuses_unknown_types():
    with pytest.raises(wire.WireError):
        wire.encode("nonsense")
