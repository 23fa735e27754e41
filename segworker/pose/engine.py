"""The pose engine: MediaPipe landmarks and person masks, turned into garment masks.

Needs no download: its models ship inside the ``mediapipe`` wheel. See
``docs/pose.md`` for how it works and what it gets wrong.
"""

from __future__ import annotations

import time

import numpy as np

from segworker.engine import Engine, NoPersonError, Segmentation
from segworker.pose.detector import PoseDetector
from segworker.pose.parts import garment_masks


class PoseEngine(Engine):
    """Upper/lower masks from BlazePose landmarks, person masks and colour.

    Produces no label map (``Segmentation.seg_map`` is None). Raises
    :class:`NoPersonError` when BlazePose finds no person.
    """

    name = "pose"

    def __init__(self, detector: PoseDetector | None = None) -> None:
        """Load the MediaPipe graphs (raises EngineLoadError if they cannot start)."""
        self._detector = detector or PoseDetector()

    def segment(self, rgb: np.ndarray) -> Segmentation:
        """Masks for one upright RGB photo, at its size."""
        seen = self._detector.observe(rgb)
        if seen is None:
            raise NoPersonError("no person found in the photo")
        t0 = time.perf_counter()
        masks = garment_masks(rgb, seen.person.landmarks, seen.person.mask, seen.everyone)
        timings = dict(seen.timings_ms, garments=(time.perf_counter() - t0) * 1000)
        return Segmentation(upper=masks.upper, lower=masks.lower, timings_ms=timings)

    def describe(self) -> dict:
        """Engine facts for /health and the start-up log."""
        facts = {"engine": self.name,
                 "models": "MediaPipe BlazePose full (complexity 1) + selfie segmentation",
                 "labels": False}
        if self.selected_because:
            facts["selected_because"] = self.selected_because
        return facts

    def close(self) -> None:
        """Free the MediaPipe graphs."""
        self._detector.close()
