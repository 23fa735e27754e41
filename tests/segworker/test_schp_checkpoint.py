"""Loading SCHP weights files: both official generations round-trip exactly,
and every bad file fails at start-up with one clear message."""

from __future__ import annotations

import argparse
import logging
import pickle

import pytest
import torch
from torch import nn

from segworker.engine import EngineLoadError
from segworker.schp import checkpoint
from segworker.schp.checkpoint import load_model, read_checkpoint
from segworker.schp.datasets import Release
from segworker.schp.network import SchpNet
from tests.segworker.fixtures.schp_checkpoints import (
    as_2019_file,
    as_2020_file,
    cheap_state,
    random_state,
    save_legacy,
)

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def state():
    return random_state("atr", seed=0)


@pytest.fixture(scope="module")
def files(state, tmp_path_factory):
    folder = tmp_path_factory.mktemp("schp_weights")
    made = {"2020": save_legacy(as_2020_file(state), folder / "exp-schp-201908301523-atr.pth"),
            "2019": save_legacy(as_2019_file(state), folder / "atr-2019.pth")}
    yield made
    for path in made.values():  # 267 MB each: do not leave them in pytest's kept temp dirs
        path.unlink()


@pytest.fixture(scope="module")
def photo_batch():
    return torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(5))


def _in_memory(state, abs_weight: bool) -> SchpNet:
    net = SchpNet(18)
    net.load_state_dict(state, strict=True)
    net.set_abs_weight(abs_weight)
    return net.eval()


def _logits(net: SchpNet, batch: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        return net(batch)


def _error(path, dataset: str = "auto", **kwargs) -> str:
    with pytest.raises(EngineLoadError) as info:
        read_checkpoint(path, dataset, **kwargs)
    message = str(info.value)
    assert str(path) in message
    assert "\n" not in message and "Traceback" not in message
    assert info.value.__cause__ is None
    return message


def test_the_2020_fixture_looks_like_the_release_file(files):
    raw = torch.load(files["2020"], weights_only=True)
    assert list(raw) == ["state_dict"]
    keys = list(raw["state_dict"])
    assert len(keys) == 603 and all(k.startswith("module.") for k in keys)
    assert not any("num_batches_tracked" in k for k in keys)
    assert (raw["state_dict"]["module.bn1.weight"] < 0).any()
    with open(files["2020"], "rb") as f:
        assert f.read(2) != b"PK"  # legacy pickle, not a zip archive
    # The official ATR file is 267,445,237 bytes; storage ids may move it a few bytes.
    assert abs(files["2020"].stat().st_size - 267_445_237) < 1024


def test_2020_file_gives_bit_identical_logits_to_the_in_memory_model(state, files, photo_batch):
    model, info = load_model(files["2020"])
    assert (info.dataset, info.generation, info.known_release) == ("atr", "2020", False)
    assert all(norm.abs_weight for norm in model.norm_layers().values())
    expected = _logits(_in_memory(state, abs_weight=True), photo_batch)
    assert torch.equal(_logits(model, photo_batch), expected)


def test_2019_file_loads_with_raw_weight_batchnorm_maths(state, files, photo_batch):
    raw = torch.load(files["2019"], weights_only=True)
    assert len(raw) == 722 and "module.decoder.conv1.1.bn.weight" in raw
    model, info = load_model(files["2019"], "atr")
    assert (info.dataset, info.generation) == ("atr", "2019")
    assert not any(norm.abs_weight for norm in model.norm_layers().values())
    logits = _logits(model, photo_batch)
    assert torch.equal(logits, _logits(_in_memory(state, abs_weight=False), photo_batch))
    # Same numbers, other maths: the negative norm weights make the outputs differ.
    current = _logits(_in_memory(state, abs_weight=True), photo_batch)
    assert not torch.allclose(logits, current, atol=1e-3)


@pytest.mark.parametrize("dataset,classes", [("lip", 20), ("pascal", 7)])
def test_dataset_is_detected_from_the_classifier(tmp_path, dataset, classes):
    path = save_legacy(as_2020_file(cheap_state(dataset)), tmp_path / "w.pth")
    state, info = read_checkpoint(path)
    assert info.dataset == dataset
    assert state["fushion.3.weight"].shape[0] == classes
    assert read_checkpoint(path, dataset)[1].dataset == dataset


def test_known_release_hash_is_recognised_and_logged(tmp_path, monkeypatch, caplog):
    path = save_legacy(as_2020_file(cheap_state("atr")), tmp_path / "w.pth")
    caplog.set_level(logging.INFO, logger="segworker.schp.checkpoint")
    _, info = read_checkpoint(path)
    assert not info.known_release
    assert any(r.getMessage() == "schp_weights_unknown_hash" for r in caplog.records)
    release = Release("exp-schp-201908301523-atr.pth", "atr", "2020", path.stat().st_size)
    monkeypatch.setitem(checkpoint.KNOWN_RELEASES, info.sha256, release)
    _, info = read_checkpoint(path)
    assert info.known_release and info.release == release
    assert any(r.getMessage() == "schp_weights_known" for r in caplog.records)


def test_configured_dataset_must_match_the_file(tmp_path):
    path = save_legacy(as_2020_file(cheap_state("atr")), tmp_path / "atr.pth")
    message = _error(path, "lip")
    assert "holds the atr model (18 classes)" in message
    assert "SCHP_DATASET" in message and "says lip (20 classes)" in message


def test_missing_file(tmp_path):
    assert "does not exist" in _error(tmp_path / "nope.pth")


def test_empty_file_and_directory(tmp_path):
    (tmp_path / "empty.pth").write_bytes(b"")
    assert "is empty" in _error(tmp_path / "empty.pth")
    assert "not a regular file" in _error(tmp_path)


def test_truncated_file(tmp_path):
    state = cheap_state("atr")
    state["layer4.0.conv2.weight"] = torch.ones(512, 512, 3, 3)  # some real data to cut into
    data = save_legacy(as_2020_file(state), tmp_path / "whole.pth").read_bytes()
    for cut in (100, len(data) // 20, len(data) // 2, len(data) - 7):
        (tmp_path / "cut.pth").write_bytes(data[:cut])
        assert "is truncated or corrupt" in _error(tmp_path / "cut.pth"), cut


def test_text_and_plain_pickle_files_are_not_checkpoints(tmp_path):
    (tmp_path / "notes.pth").write_text("these are not weights\n")
    assert "is not a PyTorch checkpoint" in _error(tmp_path / "notes.pth")
    (tmp_path / "plain.pkl").write_bytes(pickle.dumps({"a": 1}))
    assert "is not a PyTorch checkpoint" in _error(tmp_path / "plain.pkl")


def test_checkpoint_of_something_else(tmp_path):
    save_legacy([1, 2, 3], tmp_path / "list.pth")
    assert "holds a list, not a state dict" in _error(tmp_path / "list.pth")
    other = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.Linear(8, 2)).state_dict()
    save_legacy({"state_dict": other}, tmp_path / "other.pth")
    message = _error(tmp_path / "other.pth")
    assert "is not an SCHP checkpoint: none of the 603 SCHP weights" in message
    assert "0.weight" in message
    save_legacy({"state_dict": {"conv1.weight": "text"}}, tmp_path / "mixed.pth")
    assert "entries that are not tensors" in _error(tmp_path / "mixed.pth")


def test_pickled_objects_are_refused_unless_explicitly_allowed(tmp_path):
    torch.save(nn.Linear(2, 2), tmp_path / "module.pth")
    assert "safe (weights-only) loading refuses" in _error(tmp_path / "module.pth")
    path = save_legacy({"state_dict": as_2020_file(cheap_state("atr"))["state_dict"],
                        "args": argparse.Namespace(lr=0.1)}, tmp_path / "train.pth")
    assert "safe (weights-only) loading refuses" in _error(path)
    assert read_checkpoint(path, allow_unsafe_pickle=True)[1].generation == "2020"


def test_missing_and_unexpected_keys(tmp_path):
    state = cheap_state("atr")
    del state["layer3.5.conv2.weight"]
    state["layer3.5.conv9.weight"] = torch.zeros(1)
    message = _error(save_legacy(as_2020_file(state), tmp_path / "keys.pth"))
    assert "1 missing keys (e.g. layer3.5.conv2.weight)" in message
    assert "1 unexpected keys (e.g. layer3.5.conv9.weight)" in message


def test_wrong_shapes(tmp_path):
    state = cheap_state("atr")
    state["layer1.0.conv1.weight"] = torch.zeros(1).expand(64, 128, 3, 3)
    message = _error(save_legacy(as_2020_file(state), tmp_path / "shape.pth"))
    assert "1 tensors have the wrong shape" in message
    assert "layer1.0.conv1.weight is [64, 128, 3, 3], expected [64, 128, 1, 1]" in message


def test_classifier_of_no_official_dataset(tmp_path):
    state = cheap_state("atr")
    for key, shape in (("fushion.3.weight", (10, 256, 1, 1)), ("fushion.3.bias", (10,)),
                       ("decoder.conv4.weight", (10, 256, 1, 1)), ("decoder.conv4.bias", (10,))):
        state[key] = torch.zeros(1).expand(shape)
    message = _error(save_legacy(as_2020_file(state), tmp_path / "ten.pth"))
    assert "has a 10-class classifier" in message and "18 (atr)" in message


def test_layouts_of_neither_generation_are_refused(tmp_path):
    bare = save_legacy(as_2020_file(cheap_state("atr"))["state_dict"], tmp_path / "bare.pth")
    assert "in neither official layout" in _error(bare)
    wrapped_2019 = save_legacy({"state_dict": as_2019_file(cheap_state("atr"))},
                               tmp_path / "mixed.pth")
    assert "'.bn.' head keys, 119 of 119 num_batches_tracked" in _error(wrapped_2019)


def test_bad_values(tmp_path):
    state = cheap_state("atr")
    state["bn1.running_var"] = torch.full((64,), float("nan"))
    assert "bn1.running_var holds NaN" in _error(
        save_legacy(as_2020_file(state), tmp_path / "nan.pth"))
    state = cheap_state("atr")
    state["bn1.bias"] = torch.zeros(64, dtype=torch.long)
    assert "bn1.bias holds torch.int64" in _error(
        save_legacy(as_2020_file(state), tmp_path / "int.pth"))
