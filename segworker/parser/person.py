"""Where the person is: the MediaPipe selfie model's person probability.

The general selfie-segmentation model ships inside the ``mediapipe`` wheel
(nothing is downloaded) and takes about 10-20 ms on one core. Its soft mask
does two jobs for the parser: it places the crop the network sees
(:func:`person_box`), and it is the network's fourth input channel, since 900
training photos cannot teach a network from scratch what a person looks like
but can teach it where a skirt ends.
"""

from __future__ import annotations

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


class PersonFinder:
    """A loaded selfie-segmentation graph. Not thread-safe: one photo at a time."""

    def __init__(self) -> None:
        try:
            import mediapipe as mp  # heavy import, only where the parser runs
            self._selfie = mp.solutions.selfie_segmentation.SelfieSegmentation(model_selection=0)
        except Exception as exc:  # ImportError, or a RuntimeError from graph set-up
            raise EngineLoadError(f"parser engine: MediaPipe could not start ({exc})") from None

    def close(self) -> None:
        """Free the MediaPipe graph."""
        self._selfie.close()

    def probability(self, rgb: np.ndarray) -> np.ndarray:
        """``H x W`` float32 person probability (0-1) at ``rgb``'s size."""
        h, w = rgb.shape[:2]
        scale = min(1.0, MODEL_SIDE / max(h, w))
        small = rgb if scale >= 1.0 else cv2.resize(
            rgb, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
        prob = self._selfie.process(np.ascontiguousarray(small)).segmentation_mask
        prob = np.asarray(prob, dtype=np.float32)
        if prob.shape != (h, w):
            prob = cv2.resize(prob, (w, h), interpolation=cv2.INTER_LINEAR)
        return np.clip(prob, 0.0, 1.0)


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
