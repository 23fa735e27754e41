"""MediaPipe models behind the pose engine: body landmarks and person masks.

Two models run on each photo, both shipped inside the ``mediapipe`` wheel
(nothing is downloaded):

- BlazePose (``model_complexity=1``, the only complexity whose weights ship
  with the wheel) gives 33 body landmarks and a soft mask of the one person it
  tracks;
- the general selfie-segmentation model gives a soft mask of *every* person.
  It is unsure about bags and other carried things, which the garment masks
  use to leave those out (see :mod:`segworker.pose.parts`).

BlazePose tracks a single person, and in a crowded street photo it sometimes
picks a small figure in the background. When the selfie mask shows much more
"person" than the tracked figure explains, the tracked figure is painted out
and BlazePose runs again; of the figures found, the largest and most central
wins (:func:`choose_person`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import cv2
import numpy as np

from segworker.engine import EngineLoadError
from segworker.refine import main_person_weight

#: Number of BlazePose landmarks.
NUM_LANDMARKS = 33

#: Most BlazePose passes per photo when looking past a background figure.
MAX_PASSES = 3

#: Soft-mask level above which a pixel counts as person (probability).
PERSON_LEVEL = 0.5

#: Unexplained selfie-mask area, as a share of the tracked figure's area, that
#: makes the detector look for another figure.
UNEXPLAINED_SHARE = 0.5

#: Margin around a painted-out figure, as a share of the image diagonal.
PAINT_MARGIN = 0.02

#: Longest side of the copy the models see (pixels); both models work at
#: 256 px inside, so larger photos only cost conversion time.
MODEL_SIDE = 1024


@dataclass
class Person:
    """One figure BlazePose tracked, in the photo's pixel coordinates."""

    landmarks: np.ndarray   #: 33 x 3 float32: x, y (pixels), visibility (0-1)
    mask: np.ndarray        #: H x W float32 person probability from BlazePose

    @property
    def area(self) -> int:
        return int(np.count_nonzero(self.mask > PERSON_LEVEL))


@dataclass
class Observation:
    """What the models saw in one photo."""

    person: Person          #: the chosen figure
    everyone: np.ndarray    #: H x W float32 probability of any person (selfie model)
    passes: int             #: BlazePose runs it took
    timings_ms: dict[str, float]


class PoseDetector:
    """Loaded MediaPipe graphs. Not thread-safe: one photo at a time."""

    def __init__(self) -> None:
        try:
            import mediapipe as mp  # heavy import, only for the pose engine
            self._pose = mp.solutions.pose.Pose(
                static_image_mode=True, model_complexity=1, enable_segmentation=True)
            self._selfie = mp.solutions.selfie_segmentation.SelfieSegmentation(model_selection=0)
        except Exception as exc:  # ImportError, or a RuntimeError from graph set-up  # noqa: BLE001
            raise EngineLoadError(f"pose engine: MediaPipe could not start ({exc})") from None

    def close(self) -> None:
        """Free the MediaPipe graphs."""
        self._pose.close()
        self._selfie.close()

    def observe(self, rgb: np.ndarray) -> Observation | None:
        """Landmarks and masks for the main figure in ``rgb``, or None when
        BlazePose finds nobody. Landmarks and masks are at ``rgb``'s size."""
        h, w = rgb.shape[:2]
        scale = min(1.0, MODEL_SIDE / max(h, w))
        small = rgb if scale >= 1.0 else cv2.resize(
            rgb, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
        found = self._observe(np.ascontiguousarray(small))
        if found is None or scale >= 1.0:
            return found
        found.person.landmarks[:, :2] /= scale
        found.person.mask = cv2.resize(found.person.mask, (w, h), interpolation=cv2.INTER_LINEAR)
        found.everyone = cv2.resize(found.everyone, (w, h), interpolation=cv2.INTER_LINEAR)
        return found

    def _observe(self, rgb: np.ndarray) -> Observation | None:
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        first = self._track(rgb)
        t1 = time.perf_counter()
        everyone = self._selfie.process(rgb).segmentation_mask.astype(np.float32)
        t2 = time.perf_counter()
        timings["pose"] = (t1 - t0) * 1000
        timings["selfie"] = (t2 - t1) * 1000
        if first is None:
            return None
        people = [first]
        painted = rgb
        while len(people) < MAX_PASSES and _unexplained(everyone, people):
            painted = _paint_out(painted, people[-1].mask)
            found = self._track(painted)
            if found is None:
                break
            people.append(found)
        if len(people) > 1:
            timings["pose_retry"] = (time.perf_counter() - t2) * 1000
        return Observation(choose_person(people), everyone, len(people), timings)

    def _track(self, rgb: np.ndarray) -> Person | None:
        result = self._pose.process(rgb)
        if result.pose_landmarks is None or result.segmentation_mask is None:
            return None
        h, w = rgb.shape[:2]
        marks = np.array([(p.x * w, p.y * h, p.visibility) for p in result.pose_landmarks.landmark],
                         dtype=np.float32)
        return Person(marks, result.segmentation_mask.astype(np.float32))


def choose_person(people: list[Person]) -> Person:
    """The largest, most central figure (:func:`segworker.refine.main_person_weight`)."""
    return max(people, key=lambda p: main_person_weight(p.mask > PERSON_LEVEL))


def _unexplained(everyone: np.ndarray, people: list[Person]) -> bool:
    """True when the selfie mask shows much more person than the figures
    tracked so far cover (another, possibly bigger, figure is there)."""
    covered = np.zeros(everyone.shape, np.uint8)
    for p in people:
        covered |= (p.mask > PERSON_LEVEL).astype(np.uint8)
    margin = _margin_px(everyone.shape)
    grown = cv2.dilate(covered, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (margin, margin)))
    rest = np.count_nonzero((everyone > PERSON_LEVEL) & (grown == 0))
    return rest > UNEXPLAINED_SHARE * max(people[-1].area, 1)


def _paint_out(rgb: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """A copy of ``rgb`` with the figure under ``mask`` (plus a margin) filled
    with the photo's mean colour, so the next BlazePose pass finds someone else."""
    margin = _margin_px(mask.shape)
    region = cv2.dilate((mask > PERSON_LEVEL).astype(np.uint8),
                        cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (margin, margin))) > 0
    out = rgb.copy()
    out[region] = rgb.reshape(-1, 3).mean(axis=0).astype(np.uint8)
    return out


def _margin_px(shape: tuple[int, ...]) -> int:
    return max(3, int(PAINT_MARGIN * float(np.hypot(shape[0], shape[1]))) | 1)
