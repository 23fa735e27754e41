"""Upper- and lower-body masks from landmarks, person masks and the photo's colours.

Pure numpy/cv2; the MediaPipe side is in :mod:`segworker.pose.detector`.

1. Silhouette: BlazePose's person mask, minus regions the selfie model
   doubts (it is unsure about bags, so most carried bags drop out here). Only
   doubted *regions* count: the selfie model's blurry edge is not trusted.
2. Geometry (:mod:`segworker.pose.body`): each pixel's nearest body part and
   its place along the torso; arms and torso above the waist line are the
   geometric upper body, legs and torso below it the lower body.
3. Colour: five colour models are fitted to seed pixels the geometry is sure
   about (chest: upper garment; tops of the thighs: lower garment; face:
   skin; top of the head: hair; just outside the silhouette: background),
   and a sixth class, "carried", has a flat colour model and a prior that
   grows with the distance from the sleeves, torso and legs (hands do not
   count: garments end at the wrist) and is raised around each hand (what a
   hand holds is carried unless its colour is clearly a garment's). When the
   thighs show the chest's colours but the calves another garment, the
   person wears a long coat (or tunic): the leg garment is learnt from the
   calves and the thighs' other colours, and the upper garment may reach
   below the waist on colour alone. Each pixel takes the class
   with the best colour likelihood plus geometric prior, smoothed along the
   photo's colour edges, and the upper and lower models are refitted once to
   what they won. This moves hair lying on the shoulders out of the upper
   mask, trims background caught in the silhouette's edge, drops much of a
   bag held away from the body, and lets a garment's colour move the split
   between upper and lower from the waist line.
4. Skin takes the side of the geometry (bare arms are upper, bare legs lower);
   head, hair, feet, background and carried things are in neither mask. A
   photo whose silhouette has no thighs (cut at the waist) has no lower body.

All of this runs on a copy shrunk to at most :data:`WORK_SIDE` pixels; the
masks are then scaled back and cut to the full-resolution silhouette.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from segworker.pose import body as B
from segworker.pose.colour import best_class, colour_model, edge_smoother, flat_model, quantize

#: Longest side of the image the garment analysis runs on (pixels).
WORK_SIDE = 512

#: BlazePose person-mask level above which a pixel is in the silhouette.
PERSON_LEVEL = 0.5

#: Selfie-model level below which a pixel is outside the silhouette (its edge).
EVERYONE_LEVEL = 0.5

#: Selfie-model level below which a silhouette pixel is doubted.
DOUBT_LEVEL = 0.9

#: Smallest doubted region that is dropped from the silhouette, as a share of
#: the image diagonal (thinner doubt is the selfie model's blurry edge).
DOUBT_SIZE = 0.01

#: Log-prior penalty for a garment class one step outside its geometric zone
#: (upper garment below the waist, lower garment just above it). Small enough
#: that a clear colour match moves the split.
NEAR_PENALTY = 1.0

#: Log-prior of a class where it practically cannot be.
FAR_PENALTY = 6.0

#: Log-prior of skin anywhere on the body.
SKIN_PRIOR = -1.0

#: How fast the hair prior falls with distance from the head centre (log
#: units per torso length).
HAIR_FALL = 3.0

#: Score smoothing radius, as a share of the image diagonal.
SMOOTH_SHARE = 0.004

#: Width of the background band around the silhouette whose colours make the
#: background model, as a share of the image diagonal.
RING_SHARE = 0.03

#: Distance from the stick figure (sleeves, torso, legs) where the "carried"
#: prior starts to rise, as a share of the body breadth (shoulder width, or
#: more for a body turned sideways: ``Body.breadth``). Nearly all garment
#: pixels are closer; a quarter of bag pixels are more than twice as far.
CARRIED_FROM = 0.2

#: Rise of the "carried" log-prior per body breadth beyond CARRIED_FROM.
CARRIED_SLOPE = 20.0

#: Radius of the zone around a hand's centre, as a share of the body breadth.
HAND_REACH = 0.3

#: Log-prior bonus of "carried" in the zone around a hand.
HAND_BONUS = 3.0

#: Log-likelihood margin over a flat colour model from which a colour counts
#: as one of a seed's colours (used to tell skin on the calves).
LIKE_MARGIN = 2.0

#: Long-coat test (``_leg_garment_seed``): colour overlap of chest and
#: thighs from which they may be one garment (Bhattacharyya coefficient) ...
COAT_SAME = 0.85

#: ... how much less the calves must overlap the chest than the thighs do ...
COAT_GAP = 0.2

#: ... and the share of the calves that must be clothed (not skin-coloured).
COAT_CLOTHED = 0.5

# Class order in the colour classification.
UPPER, LOWER, SKIN, HAIR, BACKGROUND, CARRIED = range(6)


@dataclass
class Masks:
    """Boolean H x W masks of one photo."""

    upper: np.ndarray
    lower: np.ndarray


def garment_masks(rgb: np.ndarray, landmarks: np.ndarray, person: np.ndarray,
                  everyone: np.ndarray) -> Masks:
    """Upper- and lower-body masks at the photo's size.

    ``landmarks`` is BlazePose's 33 x 2 (or more columns) pixel positions,
    ``person`` its person probability and ``everyone`` the selfie model's,
    both H x W float. The masks may be empty (a figure whose clothes the
    geometry cannot place); the caller decides what that means.
    """
    h, w = person.shape
    scale = min(1.0, WORK_SIDE / max(h, w))
    small_rgb, small_person, small_everyone = _shrink(scale, rgb, person, everyone)
    silhouette, doubted = _silhouette(small_person, small_everyone)
    body = B.Body(np.asarray(landmarks, np.float32)[:, :2]).scaled(scale)
    upper, lower = _classify(small_rgb, small_person, silhouette, body)
    # Full-resolution outline, without the doubted regions found above.
    outline = (person > PERSON_LEVEL) & (everyone > EVERYONE_LEVEL) & ~_grow(doubted, (h, w))
    return Masks(_grow(upper, (h, w)) & outline, _grow(lower, (h, w)) & outline)


def _classify(rgb: np.ndarray, person: np.ndarray, silhouette: np.ndarray,
              body: B.Body) -> tuple[np.ndarray, np.ndarray]:
    """Steps 2-4 of the module docstring at the working size."""
    h, w = person.shape
    regions = B.body_regions(body, h, w)
    bins = quantize(rgb)
    seeds = _seeds(body, regions, silhouette, person)
    thighs = seeds[LOWER]
    seeds[LOWER] = _leg_garment_seed(bins, seeds, _calves(body, regions, silhouette))
    models = [colour_model(bins, seed) for seed in seeds] + [flat_model()]
    priors = _priors(body, regions, person)
    if not thighs.any():  # no thighs in the silhouette (a photo cut at the waist)
        priors[LOWER] = -float(FAR_PENALTY)
    if seeds[LOWER] is not thighs:
        # A long coat: the upper garment goes on below the waist, and the leg
        # garment's own colours are known, so colour alone decides there.
        priors[UPPER] = np.maximum(priors[UPPER], np.float32(0.0))
    smoother = edge_smoother(rgb, int(SMOOTH_SHARE * np.hypot(h, w)))
    choice = best_class(bins, models, priors, smoother)
    # Refit the garment models to what they won: seeds are small, and the
    # garment usually reaches beyond them (sleeves, hems).
    zone = silhouette & (regions.part != B.HEAD) & (regions.part != B.FOOT)
    models[UPPER] = colour_model(bins, zone & (choice == UPPER))
    models[LOWER] = colour_model(bins, zone & (choice == LOWER))
    choice = best_class(bins, models, priors, smoother)
    skin = choice == SKIN
    upper = zone & ((choice == UPPER) | (skin & regions.geometric_upper))
    lower = zone & ((choice == LOWER) | (skin & regions.geometric_lower))
    # No thighs, no lower body (the hand on the torso's bottom edge is skin).
    return upper, lower & thighs.any()


def _calves(body: B.Body, regions: B.Regions, silhouette: np.ndarray) -> np.ndarray:
    """Silhouette pixels along the upper two thirds of the calves (above the shoes)."""
    p, grid = body.points, regions.grid
    reach = _leg_reach(body)
    calves = np.zeros_like(silhouette)
    for knee, ankle in ((B.L_KNEE, B.L_ANKLE), (B.R_KNEE, B.R_ANKLE)):
        shin = p[knee] + (p[ankle] - p[knee]) * 0.67  # stops short of the shoes
        calves |= B.segment_distance(grid, p[knee], shin) < reach
    return silhouette & calves


def _leg_garment_seed(bins: np.ndarray, seeds: list[np.ndarray], calves: np.ndarray) -> np.ndarray:
    """The lower-garment seed, without a long coat's colours.

    The thighs' seed shows the chest's colours both for a suit and for a coat
    (or tunic) over the leg garment. The calves tell them apart: a suit's
    trousers go on down in the chest's colours, while under a coat's hem the
    leg garment shows in other colours. In that case the seed becomes the
    clothed (not skin-coloured) calves plus the thigh pixels whose colour is
    likelier under the calves' colours than under the chest's; otherwise the
    thighs' seed is returned unchanged.
    """
    thighs = seeds[LOWER]
    skin_like = colour_model(bins, seeds[SKIN])[bins] > flat_model()[0] + LIKE_MARGIN
    clothed = calves & ~skin_like
    if not thighs.any() or clothed.sum() < COAT_CLOTHED * max(calves.sum(), 1):
        return thighs
    chest, thigh, calf = (colour_model(bins, seed) for seed in (seeds[UPPER], thighs, clothed))
    chest_thigh, chest_calf = _overlap(chest, thigh), _overlap(chest, calf)
    if chest_thigh < COAT_SAME or chest_thigh - chest_calf < COAT_GAP:
        return thighs
    return clothed | (thighs & (calf[bins] > chest[bins]))


def _overlap(a: np.ndarray, b: np.ndarray) -> float:
    """Bhattacharyya coefficient of two colour models (1: same colours, 0: none shared)."""
    return float(np.sum(np.sqrt(np.exp(a.astype(np.float64) + b))))


def _silhouette(person: np.ndarray, everyone: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(silhouette, doubted)``: the person's pixels, and the regions of at
    least :data:`DOUBT_SIZE` across that the selfie model doubts (removed)."""
    outline = (person > PERSON_LEVEL) & (everyone > EVERYONE_LEVEL)
    doubt = (outline & (everyone <= DOUBT_LEVEL)).astype(np.uint8)
    size = max(1, int(DOUBT_SIZE * np.hypot(person.shape[0], person.shape[1]))) | 1
    doubted = cv2.morphologyEx(doubt, cv2.MORPH_OPEN,
                               cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))) > 0
    return outline & ~doubted, doubted


def _seeds(body: B.Body, regions: B.Regions, silhouette: np.ndarray,
           person: np.ndarray) -> list[np.ndarray]:
    """Pixels each colour model learns from, in class order."""
    grid, t, p = regions.grid, regions.t, body.points
    chest = (B.segment_distance(grid, body.shoulder_mid, body.hip_mid) < 0.3 * body.shoulder_width)
    upper = silhouette & chest & (t > 0.25) & (t < 0.8)
    thigh_reach = _leg_reach(body)
    thighs = np.zeros_like(silhouette)
    for hip, knee in ((B.L_HIP, B.L_KNEE), (B.R_HIP, B.R_KNEE)):
        thighs |= B.segment_distance(grid, p[hip], (p[hip] + p[knee]) / 2) < thigh_reach
    lower = silhouette & thighs & (t > 1.1)
    face = _face(body, grid)
    eyes_y = float(p[B.L_EYE, 1] + p[B.R_EYE, 1]) / 2
    hair = (silhouette & ~face & (_head_distance(body, grid) < 1.1 * _head_radius(body))
            & (grid[1] < eyes_y - 0.3 * body.eye_distance))
    ring_px = max(3, int(RING_SHARE * np.hypot(silhouette.shape[0], silhouette.shape[1]))) | 1
    near = cv2.dilate(silhouette.astype(np.uint8), np.ones((ring_px, ring_px), np.uint8)) > 0
    background = near & (person < 0.1)
    return [upper, lower, face, hair, background]


def _priors(body: B.Body, regions: B.Regions,
            person: np.ndarray) -> list[np.ndarray | float]:
    """Log priors of each class from the geometry, in class order."""
    part, t = regions.part, regions.t
    torso = part == B.TORSO
    upper = np.where(regions.geometric_upper, 0.0,
                     np.where(torso | (part == B.THIGH), -NEAR_PENALTY, -FAR_PENALTY))
    lower = np.where(regions.geometric_lower, 0.0,
                     np.where(torso & (t > 0.6), -NEAR_PENALTY, -FAR_PENALTY))
    head_gap = _head_distance(body, regions.grid) / body.torso_length
    hair = np.where(t < 0.6, -HAIR_FALL * head_gap, -FAR_PENALTY)
    p = np.clip(person, 1e-3, 1 - 1e-3)
    background = np.log(1 - p) - np.log(p)
    carried = CARRIED_SLOPE * (regions.reach / body.breadth - CARRIED_FROM)
    # What a hand holds is carried (garments end at the wrist); the colour
    # still wins for a garment under the hand (a hand on the hip).
    held = B.hand_distance(body, regions.grid) < HAND_REACH * body.breadth
    carried = carried + HAND_BONUS * held
    return [upper.astype(np.float32), lower.astype(np.float32), SKIN_PRIOR,
            hair.astype(np.float32), background.astype(np.float32), carried.astype(np.float32)]


def _leg_reach(body: B.Body) -> float:
    """Distance from a leg's bone line that is surely still the leg (pixels)."""
    return 0.2 * body.hip_width + 0.05 * body.torso_length


def _face(body: B.Body, grid: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    p = body.points
    centre = (p[B.L_EYE] + p[B.R_EYE] + p[B.MOUTH_L] + p[B.MOUTH_R]) / 4
    return np.hypot(grid[0] - centre[0], grid[1] - centre[1]) < 0.6 * body.eye_distance


def _head_radius(body: B.Body) -> float:
    ears = float(np.linalg.norm(body.points[B.L_EAR] - body.points[B.R_EAR]))
    return max(ears, 1.5 * body.eye_distance)


def _head_distance(body: B.Body, grid: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    c = body.head_centre
    return np.hypot(grid[0] - c[0], grid[1] - c[1])


def _shrink(scale: float, rgb: np.ndarray, person: np.ndarray,
            everyone: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if scale >= 1.0:
        return rgb, person, everyone
    size = (max(1, round(rgb.shape[1] * scale)), max(1, round(rgb.shape[0] * scale)))
    return (cv2.resize(rgb, size, interpolation=cv2.INTER_AREA),
            cv2.resize(person, size, interpolation=cv2.INTER_LINEAR),
            cv2.resize(everyone, size, interpolation=cv2.INTER_LINEAR))


def _grow(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """``mask`` scaled to ``shape`` with smooth (not blocky) edges."""
    if mask.shape == shape:
        return mask
    soft = cv2.resize(mask.astype(np.uint8) * 255, (shape[1], shape[0]),
                      interpolation=cv2.INTER_LINEAR)
    return soft >= 128
