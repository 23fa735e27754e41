"""Whether there is a person, and where: MediaPipe models from the wheel.

All ship inside the ``mediapipe`` wheel (nothing is downloaded):

- the general selfie-segmentation model (about 10 ms on one core) gives a soft
  person mask that places the crop the network sees (:func:`person_box`) and is
  the network's fourth input channel: 900 training photos cannot teach a
  network from scratch what a person looks like, but can teach it where a
  skirt ends;
- it, and the network, also take a cat or a coffee cup for a person (neither
  ever saw a photo without one). So :meth:`PersonFinder.sees_person` asks
  detectors that know people, cheapest first: the short-range face detector
  (close-ups, about 2 ms), the full-range one (people further away, about
  6 ms), then BlazePose landmarks on the whole photo and on the person crop
  (faces hidden, turned away or cut off; about 50 ms each). Any of them
  finding someone is enough;
- BlazePose's landmarks of the main person (:meth:`PersonFinder.landmarks`,
  on the crop around them) are what the pose input planes are drawn from
  (:mod:`segworker.parser.pose`). When the network takes them they are
  looked for first, for every photo, and a pose found is the person check.
"""

from __future__ import annotations

from typing import NamedTuple

import cv2
import numpy as np

from segworker.engine import EngineLoadError
from segworker.refine import centred_weights

#: Probability above which a pixel counts as person.
PERSON_LEVEL = 0.5

#: Longest side of the copy the model sees (pixels); it works at 256 px inside,
#: so a larger copy only costs conversion time.
MODEL_SIDE = 512

#: Smallest person region kept, as a share of the photo's pixels.
MIN_PERSON_SHARE = 0.002


class Person(NamedTuple):
    """What :meth:`PersonFinder.locate` found."""

    prob: np.ndarray                    #: H x W float32 person probability (0-1)
    box: tuple[int, int, int, int]      #: the main person's (x0, y0, x1, y1)
    landmarks: np.ndarray | None        #: 33 x 3 BlazePose landmarks (x, y, visibility), or None


class PersonFinder:
    """A loaded selfie-segmentation graph. Not thread-safe: one photo at a time."""

    def __init__(self) -> None:
        try:
            import mediapipe as mp  # heavy import, only where the parser runs
            self._selfie = mp.solutions.selfie_segmentation.SelfieSegmentation(model_selection=0)
            faces = mp.solutions.face_detection.FaceDetection
            self._faces = (faces(model_selection=0), faces(model_selection=1))
            # complexity 1 is the only BlazePose whose weights ship in the wheel
            self._pose = mp.solutions.pose.Pose(static_image_mode=True, model_complexity=1,
                                                enable_segmentation=False)
        except Exception as exc:  # ImportError, or a RuntimeError from graph set-up  # noqa: BLE001
            raise EngineLoadError(f"parser engine: MediaPipe could not start ({exc})") from None

    def close(self) -> None:
        """Free the MediaPipe graphs."""
        self._selfie.close()
        self._pose.close()
        for detector in self._faces:
            detector.close()

    def locate(self, rgb: np.ndarray, with_pose: bool = False) -> Person | None:
        """The main person of ``rgb`` (probability, box and, with ``with_pose``,
        BlazePose landmarks), or None when the selfie model finds no region or
        no detector agrees it is a person (:meth:`sees_person`). The models'
        shrunk copy is made once; the landmarks' pose run is also the check's."""
        small = _model_copy(rgb)
        prob = self._probability(small, (rgb.shape[0], rgb.shape[1]))
        box = person_box(prob)
        if box is None:
            return None
        if with_pose:
            landmarks = self.landmarks(rgb, box)
            if landmarks is None and not self.sees_person(small, rgb, box, crop_pose=False):
                return None
            return Person(prob, box, landmarks)
        if not self.sees_person(small, rgb, box):
            return None
        return Person(prob, box, None)

    def sees_person(self, small: np.ndarray, rgb: np.ndarray,
                    box: tuple[int, int, int, int], crop_pose: bool = True) -> bool:
        """True when a face detector or BlazePose finds a person in ``small`` (the
        models' copy of ``rgb``), or (``crop_pose``) BlazePose in the crop of
        ``rgb`` around ``box`` (a small figure, seen larger)."""
        if any(face.process(small).detections for face in self._faces):
            return True
        if self._pose.process(small).pose_landmarks is not None:
            return True
        return crop_pose and self.landmarks(rgb, box) is not None

    def landmarks(self, rgb: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray | None:
        """BlazePose's ``33 x 3`` float32 landmarks (x, y in ``rgb``'s pixels,
        visibility 0-1) of the person in ``box``, or None when it finds nobody.

        BlazePose looks at the crop around ``box`` (a quarter of its size added
        on each side), so a small figure is seen larger and a passer-by is
        not the one it picks."""
        x0, y0, x1, y1 = box
        mx, my = (x1 - x0) // 4, (y1 - y0) // 4
        ax, ay = max(0, x0 - mx), max(0, y0 - my)
        around = rgb[ay:y1 + my, ax:x1 + mx]
        found = self._pose.process(_model_copy(around)).pose_landmarks
        if found is None:
            return None
        h, w = around.shape[:2]
        return np.array([[ax + p.x * w, ay + p.y * h, p.visibility] for p in found.landmark],
                        dtype=np.float32)

    def probability(self, rgb: np.ndarray) -> np.ndarray:
        """``H x W`` float32 person probability (0-1) at ``rgb``'s size."""
        return self._probability(_model_copy(rgb), (rgb.shape[0], rgb.shape[1]))

    def _probability(self, small: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
        prob = np.asarray(self._selfie.process(small).segmentation_mask, dtype=np.float32)
        if prob.shape != shape:
            prob = np.asarray(cv2.resize(prob, (shape[1], shape[0]),
                                         interpolation=cv2.INTER_LINEAR), dtype=np.float32)
        return np.clip(prob, 0.0, 1.0)


def _model_copy(rgb: np.ndarray) -> np.ndarray:
    """``rgb`` shrunk to at most :data:`MODEL_SIDE` pixels across, contiguous."""
    h, w = rgb.shape[:2]
    scale = min(1.0, MODEL_SIDE / max(h, w))
    if scale >= 1.0:
        return np.ascontiguousarray(rgb)
    return cv2.resize(rgb, (max(1, round(w * scale)), max(1, round(h * scale))),
                      interpolation=cv2.INTER_AREA)


def person_box(prob: np.ndarray) -> tuple[int, int, int, int] | None:
    """``(x0, y0, x1, y1)`` around the main person in a probability map, or
    None when no region is large enough.

    The main person is the largest, most central region (the weighting of
    :func:`segworker.refine.centred_weights`, which ``single_person`` also
    uses): the crop must not centre on a passer-by.
    """
    mask = (prob > PERSON_LEVEL).astype(np.uint8)
    count, _, stats, centroids = cv2.connectedComponentsWithStats(mask, connectivity=8)
    if count <= 1:
        return None
    area = stats[1:, cv2.CC_STAT_AREA].astype(np.float64)
    weights = centred_weights(area, centroids[1:, 0], mask.shape[1])
    weights[area < MIN_PERSON_SHARE * mask.size] = -1.0
    best = int(np.argmax(weights))
    if weights[best] < 0:
        return None
    x, y, w, h = (int(v) for v in stats[best + 1, :4])
    return x, y, x + w, y + h
