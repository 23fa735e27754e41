"""Mask clean-up shared by every engine: one person, no specks, no pinholes, a margin.

Pure numpy/cv2 functions on boolean H x W masks. :func:`refine` applies them
in a fixed order, as configured by ``settings.segmentation.refine``
(:class:`common.config.RefineSettings`):

1. ``single_person``: keep only the main person's pixels (the largest, most
   central connected region of upper and lower together);
2. ``min_speck_fraction``: drop connected regions smaller than this share of
   the image;
3. ``fill_holes``: fill enclosed holes up to :data:`MAX_HOLE_FRACTION` of the
   image (larger enclosed areas are usually real background, such as the gap
   between an arm on the hip and the waist);
4. ``dilation_fraction``: grow each mask by this share of the image diagonal,
   the margin try-on inpainting wants around a garment.

The two masks are refined separately except in step 1, so they may overlap by
the dilation margin.
"""

from __future__ import annotations

import cv2
import numpy as np

from common.config import RefineSettings

#: Regions set one bounding box at a time up to this many (then one lookup).
MANY_REGIONS = 64

#: Largest hole filled, as a share of the image's pixels.
MAX_HOLE_FRACTION = 0.002

#: Gap bridged when grouping upper and lower into one person, as a share of
#: the image diagonal (a bare midriff or a belt can part the two masks).
PERSON_BRIDGE_FRACTION = 0.02

#: Longest side of the copy people are grouped on (pixels).
GROUPING_SIDE = 512

#: Weight lost by a region at the image's left or right edge relative to one
#: at the centre, when choosing the main person.
EDGE_PENALTY = 0.5


def refine(upper: np.ndarray, lower: np.ndarray,
           settings: RefineSettings) -> tuple[np.ndarray, np.ndarray]:
    """Apply the configured clean-up steps (module docstring) to both masks."""
    if settings.single_person:
        upper, lower = keep_main_person(upper, lower)
    if settings.min_speck_fraction > 0:
        upper = remove_specks(upper, settings.min_speck_fraction)
        lower = remove_specks(lower, settings.min_speck_fraction)
    if settings.fill_holes:
        upper, lower = fill_holes(upper), fill_holes(lower)
    if settings.dilation_fraction > 0:
        upper = dilate(upper, settings.dilation_fraction)
        lower = dilate(lower, settings.dilation_fraction)
    return upper, lower


def remove_specks(mask: np.ndarray, min_fraction: float) -> np.ndarray:
    """``mask`` without the 8-connected regions smaller than ``min_fraction``
    of the image's pixels."""
    _, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    drop = stats[:, cv2.CC_STAT_AREA] < min_fraction * mask.size
    drop[0] = False  # label 0 is the background
    return _set_regions(mask, labels, stats, np.flatnonzero(drop), False)


def fill_holes(mask: np.ndarray, max_fraction: float = MAX_HOLE_FRACTION) -> np.ndarray:
    """``mask`` with every enclosed hole up to ``max_fraction`` of the image filled.

    A hole is a 4-connected region of False pixels that does not touch the
    image border.
    """
    inverse = (~mask).astype(np.uint8)
    _, labels, stats, _ = cv2.connectedComponentsWithStats(inverse, connectivity=4)
    h, w = mask.shape
    x, y = stats[:, cv2.CC_STAT_LEFT], stats[:, cv2.CC_STAT_TOP]
    right, bottom = x + stats[:, cv2.CC_STAT_WIDTH], y + stats[:, cv2.CC_STAT_HEIGHT]
    enclosed = (x > 0) & (y > 0) & (right < w) & (bottom < h)
    small = stats[:, cv2.CC_STAT_AREA] <= max_fraction * mask.size
    fill = enclosed & small
    fill[0] = False  # label 0 is the mask itself
    return _set_regions(mask, labels, stats, np.flatnonzero(fill), True)


def _set_regions(mask: np.ndarray, labels: np.ndarray, stats: np.ndarray,
                 regions: np.ndarray, value: bool) -> np.ndarray:
    """A copy of ``mask`` with the pixels of the connected ``regions`` (ids in
    ``labels``) set to ``value``, each within its own bounding box: specks and
    holes are small, and a lookup over the whole photo per mask is not (it is
    still the quicker way for a mask of many regions)."""
    if len(regions) > MANY_REGIONS:
        chosen = np.zeros(len(stats), bool)
        chosen[regions] = True
        return np.where(chosen[labels], value, mask)
    out = mask.copy()
    for region in regions:
        x, y, w, h = (int(v) for v in stats[region, :4])
        window = out[y:y + h, x:x + w]
        window[labels[y:y + h, x:x + w] == region] = value
    return out


def dilate(mask: np.ndarray, fraction: float) -> np.ndarray:
    """``mask`` grown by ``fraction`` of the image diagonal (an elliptical
    kernel; at least one pixel when ``fraction`` > 0)."""
    radius = max(1, round(fraction * float(np.hypot(mask.shape[0], mask.shape[1]))))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    return cv2.dilate(mask.astype(np.uint8), kernel) > 0


def main_person_weight(mask: np.ndarray) -> float:
    """How much ``mask`` looks like the photo's subject: its pixel count,
    weighted down (by up to :data:`EDGE_PENALTY`) the further its centre lies
    from the image's vertical centre line."""
    xs = np.nonzero(mask)[1]
    if xs.size == 0:
        return 0.0
    return float(centred_weights(np.array([xs.size]), np.array([xs.mean()]), mask.shape[1])[0])


def keep_main_person(upper: np.ndarray, lower: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Only the pixels of the main person (:func:`main_person_weight`).

    Upper and lower are grouped into people by connected regions of their
    union, after closing gaps of :data:`PERSON_BRIDGE_FRACTION` of the
    diagonal. The grouping runs on a copy at most :data:`GROUPING_SIDE`
    pixels across (a large photo's closing would take seconds).
    """
    union = (upper | lower).astype(np.uint8)
    h, w = union.shape
    scale = min(1.0, GROUPING_SIDE / max(h, w))
    small = union if scale >= 1.0 else (cv2.resize(  # 255: a cell with any mask pixel stays set
        union * 255, (max(1, round(w * scale)), max(1, round(h * scale))),
        interpolation=cv2.INTER_AREA) > 0).astype(np.uint8)
    radius = max(1, round(PERSON_BRIDGE_FRACTION * float(np.hypot(*small.shape)) / 2))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    bridged = cv2.morphologyEx(small, cv2.MORPH_CLOSE, kernel) | small
    count, labels = cv2.connectedComponents(bridged, connectivity=8)
    if count <= 2:
        return upper.copy(), lower.copy()
    ys, xs = np.nonzero(small)
    owner = labels[ys, xs]
    area = np.bincount(owner, minlength=count).astype(np.float64)
    centre = np.bincount(owner, weights=xs, minlength=count) / np.maximum(area, 1)
    weights = centred_weights(area, centre, small.shape[1])
    weights[0] = -1.0  # label 0 is the background
    person = (labels == int(np.argmax(weights))).astype(np.uint8)
    if scale < 1.0:  # one cell of slack so no edge pixel of the person is lost
        person = cv2.resize(cv2.dilate(person, np.ones((3, 3), np.uint8)), (w, h),
                            interpolation=cv2.INTER_NEAREST)
    person = person > 0
    return upper & person, lower & person


def centred_weights(area: np.ndarray, centre_x: np.ndarray, width: int) -> np.ndarray:
    """Subject weight of regions of ``area`` pixels centred at ``centre_x``: the
    area, weighted down by up to :data:`EDGE_PENALTY` towards the left or right edge."""
    off_centre = np.abs(centre_x / width - 0.5) * 2  # 0 at the centre line, 1 at an edge
    return area * (1.0 - EDGE_PENALTY * off_centre)
