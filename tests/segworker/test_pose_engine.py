"""The pose engine on real photos shipped by scikit-image (MediaPipe runs for real)."""

from __future__ import annotations

import numpy as np
import pytest
from skimage import data

from segworker.engine import NoPersonError
from segworker.pose import PoseEngine


@pytest.fixture(scope="module")
def engine():
    engine = PoseEngine()
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def astronaut(engine):
    """Eileen Collins in an orange flight suit, cut at the waist (512 x 512)."""
    return engine.segment(data.astronaut())


def test_astronaut_upper_covers_the_torso(astronaut):
    assert astronaut.upper.shape == (512, 512) and astronaut.upper.dtype == bool
    chest = astronaut.upper[300:450, 100:300]        # the suit below the collar
    assert chest.mean() > 0.9
    assert astronaut.upper.mean() > 0.2


def test_astronaut_face_and_background_are_not_upper(astronaut):
    assert astronaut.upper[90:170, 180:270].mean() < 0.02    # face
    assert astronaut.upper[0:60, :].mean() < 0.01             # wall above the head


def test_astronaut_lower_is_empty_or_tiny(astronaut):
    """The photo ends above the hips: there is (almost) no lower body."""
    assert astronaut.lower.mean() < 0.03


def test_pose_engine_has_no_label_map_and_reports_its_stages(astronaut):
    assert astronaut.seg_map is None and astronaut.palette is None
    assert {"pose", "selfie", "garments"} <= set(astronaut.timings_ms)


def test_a_photo_without_a_person_fails_with_no_person(engine):
    with pytest.raises(NoPersonError) as err:
        engine.segment(data.coffee())
    assert err.value.reason == "no_person"


def test_describe_names_the_engine_and_why(engine):
    engine.selected_because = "SEGMENTATION_ENGINE=pose"
    facts = engine.describe()
    assert facts["engine"] == "pose" and facts["labels"] is False
    assert facts["selected_because"] == "SEGMENTATION_ENGINE=pose"


def test_grey_photos_work_too(engine):
    grey = np.repeat(data.astronaut().mean(axis=2, keepdims=True), 3, axis=2).astype(np.uint8)
    seg = engine.segment(grey)
    assert seg.upper[300:450, 100:300].mean() > 0.8
