"""The SCHP engine: the Segmentation it returns, no-person detection, the flip
test, bf16, device choice, and start-up from settings (eager backend; the
compiled backend is tested in test_schp_runtime.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from common.config import LabelSet, load_settings
from segworker.engine import EngineLoadError, NoPersonError
from segworker.masks import voc_palette
from segworker.schp.datasets import flip_permutation
from segworker.schp.engine import SchpEngine, choose_device
from segworker.schp.network import SchpNet
from segworker.schp.transforms import preprocess
from tests.segworker.fixtures.schp_checkpoints import as_2020_file, random_state, save_legacy

pytestmark = pytest.mark.usefixtures("one_thread")

#: Labels this seed's random network produces on PHOTO: 1, 2, 8 and 11.
LABELS = LabelSet(upper=(1, 2), lower=(2, 8))

#: Network input side for the fast tests, pixels.
SIDE = 64


def _photo() -> np.ndarray:
    photo = np.zeros((96, 72, 3), dtype=np.uint8)
    photo[:48] = 255
    photo[:, :20] = (255, 0, 0)
    return photo


@pytest.fixture(scope="module")
def state():
    return random_state("atr", seed=2)


@pytest.fixture(scope="module")
def net(state):
    model = SchpNet(18)
    model.load_state_dict(state, strict=True)
    return model.eval()


@pytest.fixture(scope="module")
def engine(net):
    return SchpEngine(net, "atr", LABELS, input_size=SIDE)


@pytest.fixture(scope="module")
def batch():
    return preprocess(_photo(), SIDE)[0]


@pytest.fixture(scope="module")
def weights_file(state, tmp_path_factory):
    folder = tmp_path_factory.mktemp("schp_engine")
    path = save_legacy(as_2020_file(state), folder / "exp-schp-201908301523-atr.pth")
    yield path
    path.unlink()  # 267 MB: do not leave it in pytest's kept temp dirs


def _settings(**env: str):
    return load_settings(environ={"SCHP_DEVICE": "cpu", "SCHP_BACKEND": "eager", **env})


def test_segment_returns_photo_sized_masks_from_the_label_sets(engine):
    result = engine.segment(_photo())
    labels = result.seg_map
    assert labels.shape == (96, 72) and labels.dtype == np.uint8
    assert len(np.unique(labels)) >= 3
    assert result.upper.dtype == bool and result.lower.dtype == bool
    assert np.array_equal(result.upper, np.isin(labels, LABELS.upper))
    assert np.array_equal(result.lower, np.isin(labels, LABELS.lower))
    assert result.upper.any() and result.lower.any()
    assert result.palette == voc_palette() and len(result.palette) == 768
    assert set(result.timings_ms) == {"preprocess", "forward", "postprocess"}
    assert all(v >= 0 for v in result.timings_ms.values())


def test_all_background_raises_no_person(engine, net):
    bias = net.fushion[3].bias
    saved = bias.detach().clone()
    try:
        with torch.no_grad():
            bias[0] = 1e4  # background wins everywhere
        with pytest.raises(NoPersonError, match="no person") as info:
            engine.segment(_photo())
        assert info.value.reason == "no_person"
    finally:
        with torch.no_grad():
            bias.copy_(saved)


def test_rejects_anything_but_uint8_rgb(engine):
    for bad in (np.zeros((8, 8), np.uint8), np.zeros((8, 8, 4), np.uint8),
                np.zeros((8, 8, 3), np.float32)):
        with pytest.raises(ValueError, match="uint8 RGB"):
            engine.segment(bad)


def test_flip_pairs_per_dataset():
    assert flip_permutation("atr") == [0, 1, 2, 3, 4, 5, 6, 7, 8, 10, 9, 11, 13, 12, 15, 14,
                                       16, 17]
    assert flip_permutation("lip") == list(range(14)) + [15, 14, 17, 16, 19, 18]
    assert flip_permutation("pascal") == list(range(7))


def test_flip_averages_with_the_mirrored_pass(net, batch):
    flipped = SchpEngine(net, "atr", LABELS, input_size=SIDE, flip=True)
    plain = SchpEngine(net, "atr", LABELS, input_size=SIDE)
    averaged = flipped.logits(batch)
    mirror = plain.logits(batch.flip(-1))[flip_permutation("atr")].flip(-1)
    torch.testing.assert_close(averaged, (plain.logits(batch) + mirror) / 2,
                               rtol=1e-4, atol=1e-4)
    # The flip test is mirror-symmetric: a mirrored photo gives mirrored, swapped logits.
    again = flipped.logits(batch.flip(-1))[flip_permutation("atr")].flip(-1)
    torch.testing.assert_close(again, averaged, rtol=1e-4, atol=1e-4)


def test_bf16_autocast_runs_and_stays_close(net, engine, batch):
    fast = SchpEngine(net, "atr", LABELS, input_size=SIDE, precision="bf16")
    reduced, full = fast.logits(batch), engine.logits(batch)
    assert reduced.dtype == torch.float32 and reduced.shape == full.shape
    assert not torch.equal(reduced, full)  # bf16 really ran
    assert torch.corrcoef(torch.stack([reduced.flatten(), full.flatten()]))[0, 1] > 0.99


def test_describe_in_memory_engine(engine):
    facts = engine.describe()
    assert facts["engine"] == "schp" and facts["dataset"] == "atr"
    assert facts["device"] == "cpu" and facts["input_size"] == SIDE
    assert facts["known_release"] is False and facts["weights"] is None


def test_describe_says_why_the_engine_was_chosen(net):
    fresh = SchpEngine(net, "atr", LABELS, input_size=SIDE)
    assert "selected_because" not in fresh.describe()
    fresh.selected_because = "SEGMENTATION_ENGINE=schp"
    assert fresh.describe()["selected_because"] == "SEGMENTATION_ENGINE=schp"


def test_device_choice(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert choose_device("cpu").type == "cpu"
    assert choose_device("auto").type == "cpu"
    with pytest.raises(EngineLoadError, match="SCHP_DEVICE.*cuda.*no CUDA device"):
        choose_device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert choose_device("auto").type == "cuda"
    assert choose_device("cpu").type == "cpu"


def test_from_settings_needs_weights_and_a_device(monkeypatch, weights_file):
    with pytest.raises(EngineLoadError, match="SCHP weights are not configured"):
        SchpEngine.from_settings(_settings())
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(EngineLoadError, match="no CUDA device"):
        SchpEngine.from_settings(_settings(SCHP_WEIGHTS=str(weights_file), SCHP_DEVICE="cuda"))
    with pytest.raises(EngineLoadError, match="does not exist"):
        SchpEngine.from_settings(_settings(SCHP_WEIGHTS=str(weights_file) + ".missing"))


def test_from_settings_loads_the_file_and_matches_the_in_memory_engine(weights_file, engine,
                                                                        batch):
    loaded = SchpEngine.from_settings(_settings(SCHP_WEIGHTS=str(weights_file),
                                                SCHP_PRECISION="fp32"))
    facts = loaded.describe()
    assert (facts["dataset"], facts["generation"], facts["input_size"]) == ("atr", "2020", 512)
    assert facts["weights"] == str(weights_file) and facts["known_release"] is False
    assert len(facts["sha256"]) == 64 and facts["device"] == "cpu"
    assert loaded.labels == load_settings(environ={}).segmentation.schp.labels["atr"]
    assert torch.equal(loaded.logits(batch), engine.logits(batch))
    with pytest.raises(EngineLoadError, match="holds the atr model.*says pascal"):
        SchpEngine.from_settings(_settings(SCHP_WEIGHTS=str(weights_file),
                                           SCHP_DATASET="pascal"))


@pytest.mark.slow
def test_full_size_segment_from_the_weights_file(weights_file):
    loaded = SchpEngine.from_settings(_settings(SCHP_WEIGHTS=str(weights_file)))
    result = loaded.segment(_photo())  # one forward at the real 512 x 512 input
    assert result.seg_map.shape == (96, 72)
    assert result.upper.shape == result.lower.shape == (96, 72)
