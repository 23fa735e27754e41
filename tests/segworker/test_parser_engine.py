"""The parser engine with the weights that ship with the project."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from skimage import data

from common.config import ConfigError, LabelSet, load_settings
from segworker.engine import EngineLoadError, NoPersonError
from segworker.parser.classes import CLASS_NAMES
from segworker.parser.engine import ParserEngine
from segworker.precision import Choice

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def engine():
    built = ParserEngine.from_settings(load_settings(environ={}))
    yield built
    built.close()


@pytest.fixture(scope="module")
def astronaut(engine):
    return engine.segment(data.astronaut())


def test_the_astronauts_suit_is_mostly_in_the_upper_mask(astronaut):
    upper = astronaut.upper
    assert upper.shape == (512, 512) and upper.dtype == bool
    assert upper[230:450, 60:260].mean() > 0.9           # the suit's chest and sleeve
    assert upper[60:200, 170:300].mean() < 0.15          # her face
    assert astronaut.lower.mean() < 0.05                  # her legs are out of the picture


def test_nothing_is_masked_far_from_the_person(astronaut):
    both = astronaut.upper | astronaut.lower
    assert not both[:140].any()                           # above the shoulders: head and sky
    assert both[:230, :60].mean() < 0.02                  # the flag


def test_the_label_map_holds_parser_classes(astronaut):
    seg_map = astronaut.seg_map
    assert seg_map is not None and seg_map.shape == (512, 512)
    assert set(np.unique(seg_map)) <= set(range(len(CLASS_NAMES)))
    assert {"person", "preprocess", "forward", "postprocess"} <= set(astronaut.timings_ms)


def test_inference_is_deterministic(engine, astronaut):
    again = engine.segment(data.astronaut())
    assert np.array_equal(again.seg_map, astronaut.seg_map)


def test_a_photo_without_a_person_is_no_person(engine):
    with pytest.raises(NoPersonError):
        engine.segment(data.coffee())


def test_label_sets_come_from_the_configuration(engine):
    only_skin = ParserEngine(engine.net, LabelSet(upper=(4,), lower=()), finder=engine._finder)
    seg = only_skin.segment(data.astronaut())
    assert not seg.lower.any()
    assert np.array_equal(seg.upper, seg.seg_map == CLASS_NAMES.index("skin"))


def test_label_ids_that_are_not_classes_are_a_startup_error(engine):
    with pytest.raises(EngineLoadError, match="segmentation.parser.labels.upper: \\[9\\]"):
        ParserEngine(engine.net, LabelSet(upper=(1, 9), lower=(2,)), finder=engine._finder)


def test_a_configured_weights_file_that_is_missing_is_named(tmp_path):
    s = load_settings(environ={"PARSER_WEIGHTS": str(tmp_path / "gone.pt")})
    with pytest.raises(EngineLoadError, match="gone.pt: no such file"):
        ParserEngine.from_settings(s)


def test_describe_says_what_it_runs(engine):
    facts = engine.describe()
    assert facts["engine"] == "parser" and facts["classes"] == list(CLASS_NAMES)
    assert "Clothing Co-Parsing" in facts["trained_on"]
    assert facts["weights"].endswith("parser.pt")
    assert dataclasses.asdict(load_settings(environ={}).segmentation.parser.labels) == {
        "upper": (1, 3), "lower": (2, 3)}


def test_bf16_gives_the_labels_of_fp32(engine):
    """The network under bf16 autocast (PARSER_PRECISION's choice on AMX)
    labels the astronaut as fp32 does, but for a few edge pixels."""
    runs = {name: ParserEngine(engine.net, engine.labels, finder=engine._finder,
                               precision=Choice(name, f"PARSER_PRECISION={name}"))
            for name in ("fp32", "bf16")}
    maps = {name: run.segment(data.astronaut()).seg_map for name, run in runs.items()}
    assert (maps["fp32"] == maps["bf16"]).mean() > 0.995
    assert runs["bf16"].describe()["precision"] == "bf16"


def test_the_precision_setting_is_followed_and_said():
    built = ParserEngine.from_settings(load_settings(environ={"PARSER_PRECISION": "fp32"}))
    try:
        facts = built.describe()
        assert (facts["precision"], facts["precision_because"]) == ("fp32", "PARSER_PRECISION=fp32")
    finally:
        built.close()
    with pytest.raises(ConfigError, match="PARSER_PRECISION"):
        load_settings(environ={"PARSER_PRECISION": "fp16"})


def test_a_pose_network_gets_the_astronauts_landmarks():
    """A network that takes pose planes is fed BlazePose's landmarks: the
    shoulders lie in the top half of the person box, where the suit is."""
    from segworker.parser.network import NetShape, ParserNet
    from segworker.parser.person import PersonFinder
    net = ParserNet(NetShape(in_channels=8, widths=(8, 8, 16, 16, 16), decoder_width=8))
    finder = PersonFinder()
    engine = ParserEngine(net, LabelSet(upper=(1, 3), lower=(2, 3)), finder=finder)
    try:
        assert engine.pose and engine.describe()["pose_planes"] is True
        found = finder.locate(data.astronaut(), with_pose=True)
        assert found is not None and found.landmarks is not None
        x0, y0, x1, y1 = found.box
        shoulders = found.landmarks[[11, 12]]
        assert (shoulders[:, 2] > 0.5).all()
        assert (x0 <= shoulders[:, 0]).all() and (shoulders[:, 0] <= x1).all()
        assert (y0 <= shoulders[:, 1]).all() and (shoulders[:, 1] <= (y0 + y1) / 2).all()
        try:
            result = engine.segment(data.astronaut())  # untrained: any labels, but end to end
            assert result.seg_map.shape == data.astronaut().shape[:2]
        except NoPersonError:
            pass  # an untrained network may call everything background
    finally:
        engine.close()
