"""Per-photo colour models: smoothed RGB histograms and per-pixel class choice.

Pure numpy/cv2. Each class (upper garment, lower garment, skin, hair,
background) gets a histogram of the colours in its seed pixels (a class with
no seed, such as "carried thing", gets a flat one); a pixel's
score for a class is the log-likelihood of its colour plus a log prior from
its place on the body. Scores are smoothed over a small neighbourhood, along
the photo's colour edges, before the best class is taken, so isolated pixels
follow their surroundings.
"""

from __future__ import annotations

import cv2
import numpy as np

#: Histogram bins per RGB channel (16: 16 x 16 x 16 = 4096 colours).
BINS = 16

#: Probability floor of an unseen colour (keeps log-likelihoods finite).
FLOOR = 1e-5

#: Guided-filter regularisation (squared colour difference, RGB scaled to
#: 0-1, below which the filter treats colours as one region).
SMOOTHING_EPS = 0.01


def quantize(rgb: np.ndarray) -> np.ndarray:
    """H x W int32 histogram-bin index of each pixel's colour."""
    q = (rgb // (256 // BINS)).astype(np.int32)
    return (q[..., 0] * BINS + q[..., 1]) * BINS + q[..., 2]


def colour_model(bins: np.ndarray, seed: np.ndarray) -> np.ndarray:
    """Log-likelihood of each colour bin under the colours of ``seed`` pixels.

    The histogram is smoothed with a [1, 2, 1] kernel along each channel, so a
    colour one bin away from the seed's still counts. An empty seed gives a
    flat model (every colour equally likely).
    """
    hist = np.bincount(bins[seed], minlength=BINS ** 3).astype(np.float64)
    hist = hist.reshape(BINS, BINS, BINS)
    for axis in range(3):
        hist = 0.25 * np.roll(hist, 1, axis) + 0.5 * hist + 0.25 * np.roll(hist, -1, axis)
    total = hist.sum()
    hist = hist / total if total > 0 else np.full_like(hist, 1.0 / hist.size)
    return np.log(hist.ravel() + FLOOR).astype(np.float32)


def flat_model() -> np.ndarray:
    """A colour model under which every colour is equally likely."""
    return np.full(BINS ** 3, -np.log(BINS ** 3), np.float32)


def edge_smoother(guide: np.ndarray, radius: int) -> cv2.ximgproc.GuidedFilter:
    """A guided filter steered by the photo ``guide`` (H x W x 3 uint8): it
    averages over ``radius`` pixels within areas of even colour but not across
    colour edges. Built once per photo (it precomputes the guide's statistics)."""
    return cv2.ximgproc.createGuidedFilter(guide.astype(np.float32) / 255.0, max(1, radius),
                                           SMOOTHING_EPS)


def best_class(bins: np.ndarray, models: list[np.ndarray], priors: list[np.ndarray | float],
               smoother: cv2.ximgproc.GuidedFilter) -> np.ndarray:
    """H x W index of the class with the best score after edge-aware smoothing.

    ``models[k]`` is a colour model from :func:`colour_model`, ``priors[k]``
    an H x W log prior (or a constant). Each class's score map goes through
    ``smoother`` (:func:`edge_smoother`), so decisions snap to garment outlines.
    """
    scores = np.empty((len(models),) + bins.shape, np.float32)
    for k, (model, prior) in enumerate(zip(models, priors)):
        scores[k] = smoother.filter((model[bins] + prior).astype(np.float32))
    return np.argmax(scores, axis=0)
