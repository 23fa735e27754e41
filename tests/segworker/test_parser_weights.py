"""Parser weights files: what training writes loads; anything damaged is one clear line."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch

from common.files import file_sha256
from segworker.engine import EngineLoadError
from segworker.parser import weights
from segworker.parser.network import NetShape, ParserNet

SMALL = NetShape(widths=(8, 8, 16, 16, 16), decoder_width=8)


@pytest.fixture
def saved(tmp_path) -> Path:
    torch.manual_seed(0)
    path = tmp_path / "parser.pt"
    weights.save(ParserNet(SMALL), path, {"source": "test"})
    return path


def reseal(path: Path) -> None:
    """Rewrite the .sha256 beside ``path``, as if the damage had been signed."""
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    Path(f"{path}.sha256").write_text(f"{digest}  {path.name}\n")


def load_error(path: Path) -> str:
    with pytest.raises(EngineLoadError) as err:
        weights.load(path)
    message = str(err.value)
    assert "\n" not in message and str(path) in message
    return message


def test_a_saved_file_loads_back_to_the_same_network(saved):
    torch.manual_seed(0)
    original = ParserNet(SMALL).eval()
    model, trained = weights.load(saved)
    assert trained == {"source": "test"} and model.shape == SMALL
    x = torch.randn(1, 4, 64, 32)
    with torch.no_grad():  # convolutions are stored in float16: close, not equal
        torch.testing.assert_close(model(x), original(x), rtol=0.02, atol=0.02)
    assert saved.stat().st_size < weights.MAX_BYTES
    assert Path(f"{saved}.sha256").read_text().split()[0] == file_sha256(saved)


def test_the_shipped_weights_load_and_are_small():
    model, trained = weights.load(weights.BUNDLED)
    assert weights.BUNDLED.stat().st_size <= weights.MAX_BYTES
    assert "Clothing Co-Parsing" in trained["source"]
    assert weights.parameter_count(model) > 1_000_000


def test_a_missing_file(tmp_path):
    assert "no such file" in load_error(tmp_path / "nowhere.pt")


def test_an_empty_file(tmp_path):
    path = tmp_path / "empty.pt"
    path.write_bytes(b"")
    assert "empty" in load_error(path)


def test_a_file_without_its_checksum(saved):
    Path(f"{saved}.sha256").unlink()
    assert "checksum file parser.pt.sha256 is missing" in load_error(saved)


def test_a_changed_byte_is_caught_by_the_checksum(saved):
    data = bytearray(saved.read_bytes())
    data[len(data) // 2] ^= 0xFF
    saved.write_bytes(bytes(data))
    assert "SHA-256 differs" in load_error(saved)


def test_a_truncated_file_is_not_a_torch_file(saved):
    saved.write_bytes(saved.read_bytes()[: saved.stat().st_size // 2])
    reseal(saved)
    assert "not a readable torch file" in load_error(saved)


def test_a_file_of_another_kind(tmp_path):
    path = tmp_path / "other.pt"
    torch.save({"state_dict": {"w": torch.zeros(3)}}, path)
    reseal(path)
    assert "not a parser weights file" in load_error(path)


def test_a_tensor_of_the_wrong_shape(saved):
    raw = torch.load(saved, weights_only=True)
    name = next(k for k, v in raw["state_dict"].items() if v.ndim == 4)
    raw["state_dict"][name] = torch.zeros(3, 3, 3, 3, dtype=torch.float16)
    torch.save(raw, saved)
    reseal(saved)
    assert f"tensor {name} has shape (3, 3, 3, 3)" in load_error(saved)


def test_missing_tensors(saved):
    raw = torch.load(saved, weights_only=True)
    raw["state_dict"].pop("classifier.weight")
    torch.save(raw, saved)
    reseal(saved)
    assert "missing ['classifier.weight']" in load_error(saved)


def test_nan_weights(saved):
    raw = torch.load(saved, weights_only=True)
    raw["state_dict"]["classifier.bias"][0] = float("nan")
    torch.save(raw, saved)
    reseal(saved)
    assert "NaN" in load_error(saved)


def test_other_classes(saved):
    raw = torch.load(saved, weights_only=True)
    raw["classes"] = ["background", "person"]
    torch.save(raw, saved)
    reseal(saved)
    assert "classes" in load_error(saved)


def test_a_file_too_large_is_refused_before_reading(tmp_path):
    path = tmp_path / "huge.pt"
    with open(path, "wb") as fh:
        fh.truncate(weights.MAX_BYTES + 1)
    assert "more than" in load_error(path)


POSE = NetShape(in_channels=8, widths=(8, 8, 16, 16, 16), decoder_width=8)


def test_a_pose_network_records_its_input_planes_and_loads_back(tmp_path):
    path = tmp_path / "pose.pt"
    weights.save(ParserNet(POSE), path, {"source": "test"})
    raw = torch.load(path, weights_only=True)
    assert raw["format"] == weights.FORMAT
    assert raw["planes"] == ["red", "green", "blue", "person",
                             "shoulders", "hips", "knees", "ankles"]
    model, _ = weights.load(path)
    assert model.shape.in_channels == 8


def test_a_file_of_the_first_format_still_loads_as_rgb_and_person(saved):
    raw = torch.load(saved, weights_only=True)
    raw["format"] = weights.FORMAT_V1
    del raw["planes"]
    torch.save(raw, saved)
    reseal(saved)
    model, _ = weights.load(saved)
    assert model.shape.in_channels == 4


def test_a_first_format_file_with_more_planes_is_refused(tmp_path):
    path = tmp_path / "odd.pt"
    weights.save(ParserNet(POSE), path, {})
    raw = torch.load(path, weights_only=True)
    raw["format"] = weights.FORMAT_V1
    torch.save(raw, path)
    reseal(path)
    assert "4 input planes" in load_error(path)


def test_input_planes_this_code_cannot_feed(saved):
    raw = torch.load(saved, weights_only=True)
    raw["planes"] = ["red", "green", "blue", "depth"]
    torch.save(raw, saved)
    reseal(saved)
    message = load_error(saved)
    assert "input planes ['red', 'green', 'blue', 'depth']" in message and "retrain" in message


def test_the_one_piece_penalty_lowers_that_logit_and_nothing_else(tmp_path):
    torch.manual_seed(0)
    net = ParserNet(SMALL)
    plain, lowered = tmp_path / "plain.pt", tmp_path / "lowered.pt"
    weights.save(net, plain, {})
    weights.save(net, lowered, {}, one_piece_penalty=2.5)
    x = torch.randn(1, 4, 64, 32)
    with torch.no_grad():
        a, b = weights.load(plain)[0](x), weights.load(lowered)[0](x)
    one_piece = weights.CLASS_NAMES.index("one_piece")
    torch.testing.assert_close(b[:, one_piece], a[:, one_piece] - 2.5)
    others = [c for c in range(len(weights.CLASS_NAMES)) if c != one_piece]
    assert torch.equal(a[:, others], b[:, others])
    # the file keeps the trained bias: saving what was loaded would lower it twice
    raw = torch.load(lowered, weights_only=True)
    assert raw["one_piece_penalty"] == 2.5
    assert torch.equal(raw["state_dict"]["classifier.bias"], net.classifier.bias.detach())


def test_a_file_without_a_penalty_reads_as_none(saved):
    raw = torch.load(saved, weights_only=True)
    del raw["one_piece_penalty"]
    torch.save(raw, saved)
    reseal(saved)
    with torch.no_grad():
        assert torch.equal(weights.load(saved)[0].classifier.bias, raw["state_dict"]["classifier.bias"])


@pytest.mark.parametrize("value", [-0.5, float("nan"), 11.0, "2", True])
def test_a_penalty_that_is_not_a_number_in_range_is_refused(saved, value):
    raw = torch.load(saved, weights_only=True)
    raw["one_piece_penalty"] = value
    torch.save(raw, saved)
    reseal(saved)
    assert "one_piece_penalty" in load_error(saved)
