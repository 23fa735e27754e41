"""Training samples: a labelled photo, cropped and perturbed as users' photos are.

Users send studio shots, half-body selfies, seated people and groups; the
training set is nearly all full-body street photos. Each sample therefore
draws a crop that imitates what the service will see:

- the crop box comes from the reference person (jittered), from the selfie
  model's box as at inference, or is the whole photo (a person seen small,
  with much around them);
- with :data:`HALF_BODY_P` the photo is cut below a random height between the
  chest and the knees, as a half-body photo is;
- with ``studio`` (the default in training), two perturbations aimed at
  try-on photos, which CCP's street photos do not resemble: the background
  replaced by a plain backdrop (:data:`STUDIO_P`, :func:`studio_backdrop`),
  and a top and trousers or skirt given one colour (:data:`MATCHED_P`,
  :func:`match_two_piece`), so that a colour change is not what tells a top
  from what is below it (networks trained longer called a white top over white
  shorts one-piece);
- rotation, mirroring, colour, blur and a dropped person channel on top.
"""

from __future__ import annotations

import cv2
import numpy as np

from segworker.parser import crop
from segworker.parser.classes import LOWER_ID, UPPER_ID
from segworker.parser.infer import RGB_MEAN, RGB_STD
from segworker.parser.person import person_box
from segworker.parser.pose import pose_planes

#: Chance that a sample is cut like a half-body photo.
HALF_BODY_P = 0.2

#: Chance that the crop box is the selfie model's (as at inference) / the whole photo.
SELFIE_BOX_P, WHOLE_PHOTO_P = 0.35, 0.08

#: Chance that the background is replaced by a plain studio backdrop.
STUDIO_P = 0.15

#: Chance that a sample's upper and lower garments are given one colour (the
#: committed weights' value; training's ``--matched-p`` sets another).
MATCHED_P = 0.15

#: Chance that the person-probability channel is blanked (the model may miss someone).
DROP_PERSON_P = 0.1

#: Chance that the pose planes are blanked (BlazePose finds no one in some photos).
DROP_POSE_P = 0.15

#: Largest rotation (degrees) and its chance.
MAX_ANGLE, ROTATE_P = 12.0, 0.4


def reference_box(classes: np.ndarray) -> tuple[int, int, int, int]:
    """Bounding box of every non-background pixel of a class map (the whole
    photo when there is none)."""
    ys, xs = np.nonzero(classes)
    if ys.size == 0:
        return 0, 0, classes.shape[1], classes.shape[0]
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def make_sample(rgb: np.ndarray, prob: np.ndarray, classes: np.ndarray,
                rng: np.random.Generator, landmarks: np.ndarray | None = None,
                pose: bool = False, studio: bool = False,
                resolution: float = 1.0,
                matched_p: float = MATCHED_P) -> tuple[np.ndarray, np.ndarray]:
    """``(C x H x W float32 input, H x W int64 target)`` for one photo, where
    ``classes`` holds parser class ids at the photo's size; the input's planes
    are those of :func:`segworker.parser.infer.network_input` (with ``pose``,
    the heatmaps of ``landmarks``, photo pixels, blanked with :data:`DROP_POSE_P`).
    With ``studio``, ``matched_p`` is the chance of :func:`match_two_piece`.
    Without ``studio`` no random number is drawn for the studio perturbations,
    so the samples are those of the weights trained before them. At a
    ``resolution`` below 1 the sample is the same crop at that share of the
    input's size (training's cheaper ``--low-res-epochs``); the random numbers drawn
    are the same either way."""
    rgb, prob, classes, box = _choose_region(rgb, prob, classes, rng)
    if studio:
        if rng.random() < matched_p:
            rgb = match_two_piece(rgb, classes, rng)
        if rng.random() < STUDIO_P:
            rgb = studio_backdrop(rgb, classes, rng)
    cx, cy, w, h = crop.fit_box(box)
    scale = float(np.exp(rng.uniform(-0.15, 0.3)))
    cx += rng.uniform(-0.08, 0.08) * w
    cy += rng.uniform(-0.06, 0.06) * h
    angle = rng.uniform(-MAX_ANGLE, MAX_ANGLE) if rng.random() < ROTATE_P else 0.0
    matrix = crop.crop_matrix(cx, cy, w * scale, h * scale, angle, flip=bool(rng.random() < 0.5))
    matrix, size = crop.shrunk(matrix, resolution)
    pixels = crop.crop_image(rgb, matrix, border=tuple(float(v) for v in crop.PAD_RGB), size=size)
    person = crop.crop_image(prob, matrix, size=size)
    target = crop.crop_image(classes, matrix, interpolation=cv2.INTER_NEAREST, size=size)
    pixels = _colour(pixels, rng)
    if rng.random() < DROP_PERSON_P:
        person = np.zeros_like(person)
    planes = (pixels.astype(np.float32) - RGB_MEAN) / RGB_STD
    stack = [planes.transpose(2, 0, 1), person[None]]
    if pose:
        # drawn after the half-body cut: landmarks below it are outside the photo, so unseen
        stack.append(pose_planes(None if rng.random() < DROP_POSE_P else landmarks,
                                 matrix, rgb.shape[:2], size))
    inputs = np.concatenate(stack, axis=0)
    return inputs.astype(np.float32), target.astype(np.int64)


def _choose_region(rgb: np.ndarray, prob: np.ndarray, classes: np.ndarray,
                   rng: np.random.Generator):
    box = reference_box(classes)
    if rng.random() < HALF_BODY_P:
        _, y0, _, y1 = box
        cut = int(y0 + (y1 - y0) * rng.uniform(0.35, 0.7))
        rgb, prob, classes = rgb[:cut], prob[:cut], classes[:cut]
        box = reference_box(classes)
    roll = rng.random()
    if roll < WHOLE_PHOTO_P:
        box = (0, 0, rgb.shape[1], rgb.shape[0])
    elif roll < WHOLE_PHOTO_P + SELFIE_BOX_P:
        box = person_box(prob) or box
    return rgb, prob, classes, box


def studio_backdrop(rgb: np.ndarray, classes: np.ndarray,
                    rng: np.random.Generator) -> np.ndarray:
    """``rgb`` with its background pixels (class 0) replaced by a plain
    backdrop: mostly light grey or white, sometimes a colour, with a soft
    vertical gradient and a little noise. The person's edge is feathered over
    a pixel or two, so that it is not cut out sharper than a photo's."""
    height, width = classes.shape
    if rng.random() < 0.7:
        base = np.full(3, rng.uniform(170, 250)) + rng.uniform(-8, 8, size=3)
    else:
        base = rng.uniform(30, 230, size=3)
    ramp = np.linspace(-1.0, 1.0, height, dtype=np.float32)[:, None, None] * rng.uniform(-25, 25)
    ground = base.astype(np.float32)[None, None, :] + ramp
    ground = ground + rng.normal(0.0, 2.0, size=(height, width, 1)).astype(np.float32)
    return _blend(rgb, ground, classes == 0)


def match_two_piece(rgb: np.ndarray, classes: np.ndarray,
                    rng: np.random.Generator) -> np.ndarray:
    """``rgb`` with the upper and the lower garment recoloured alike: one
    colour (often white, grey or black, as a plain tank top and shorts are)
    and one contrast for both, each keeping its own shading and texture. A
    map without both garments is returned unchanged (the same array)."""
    parts = [classes == UPPER_ID, classes == LOWER_ID]
    if min(int(part.sum()) for part in parts) < 64:
        return rgb
    if rng.random() < 0.6:
        colour = np.full(3, rng.choice([rng.uniform(20, 60), rng.uniform(200, 245),
                                        rng.uniform(90, 170)])) + rng.uniform(-6, 6, size=3)
    else:
        colour = rng.uniform(30, 230, size=3)
    contrast = rng.uniform(8, 30)
    grey = rgb.astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    painted = rgb.astype(np.float32)
    for part in parts:
        shade = (grey - grey[part].mean()) / (grey[part].std() + 1.0) * contrast
        painted[part] = colour.astype(np.float32) + shade[part][:, None]
    return _blend(rgb, painted, parts[0] | parts[1])


def _blend(rgb: np.ndarray, other: np.ndarray, where: np.ndarray) -> np.ndarray:
    """``other`` where ``where`` holds, ``rgb`` elsewhere, mixed over a pixel
    or two at the border as a photo's edges are."""
    weight = cv2.GaussianBlur(where.astype(np.float32), (0, 0), 1.0)[..., None]
    mixed = rgb.astype(np.float32) * (1.0 - weight) + other * weight
    out: np.ndarray = np.clip(mixed, 0, 255).astype(np.uint8)
    return out


def _colour(pixels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Brightness, contrast, saturation, hue, occasional grey and blur."""
    img = pixels.astype(np.float32)
    if rng.random() < 0.8:
        img = img * rng.uniform(0.7, 1.3) + rng.uniform(-25, 25)
        mean = img.mean()
        img = (img - mean) * rng.uniform(0.7, 1.3) + mean
    out: np.ndarray = np.clip(img, 0, 255).astype(np.uint8)
    if rng.random() < 0.5:
        hsv = cv2.cvtColor(out, cv2.COLOR_RGB2HSV).astype(np.int16)
        hsv[..., 0] = (hsv[..., 0] + int(rng.integers(-8, 9))) % 180
        hsv[..., 1] = np.clip(hsv[..., 1] * rng.uniform(0.6, 1.4), 0, 255)
        out = cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB)
    if rng.random() < 0.05:
        out = np.repeat(cv2.cvtColor(out, cv2.COLOR_RGB2GRAY)[..., None], 3, axis=2)
    if rng.random() < 0.2:
        out = cv2.GaussianBlur(out, (0, 0), rng.uniform(0.5, 1.5))
    return out
