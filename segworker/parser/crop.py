"""The person crop: photo pixels to network input and network output back.

The network always sees the person at about the same scale, a box around
them (:func:`segworker.parser.person.person_box`) widened by a margin and to
the input's aspect ratio, then resized to ``INPUT_H x INPUT_W``. Whatever
the photo's size, the person fills the input, so the network spends its
pixels on garments and not on street. Pixels outside the box are background.

Geometry is one 2 x 3 affine matrix from photo to input coordinates; the
training augmentation composes rotations and jitter into the same matrix.
"""

from __future__ import annotations

import cv2
import numpy as np

#: Network input size (pixels): a standing person is about 1.5 times as tall as wide with arms.
INPUT_H, INPUT_W = 384, 256

#: Margin added around the person box on each side, as a share of its size.
MARGIN = 0.08

#: The network's logits are at 1 / OUTPUT_STRIDE of the input's resolution.
OUTPUT_STRIDE = 2

#: Points per row of the maps :func:`labels_in_photo` interpolates a scattered set through.
REMAP_ROW = 1024

#: Photo colour (RGB) that pads a crop reaching past the photo's edge: the
#: normalisation mean, so padding is "nothing" to the network.
PAD_RGB = (124, 116, 104)


def fit_box(box: tuple[float, float, float, float], margin: float = MARGIN) -> np.ndarray:
    """``(cx, cy, w, h)`` of ``box`` (x0, y0, x1, y1) grown by ``margin`` and
    widened or heightened (about its centre) to the input's aspect ratio."""
    x0, y0, x1, y1 = box
    w, h = max(1.0, x1 - x0) * (1 + 2 * margin), max(1.0, y1 - y0) * (1 + 2 * margin)
    aspect = INPUT_H / INPUT_W
    if h / w > aspect:
        w = h / aspect
    else:
        h = w * aspect
    return np.array([(x0 + x1) / 2, (y0 + y1) / 2, w, h], dtype=np.float64)


def crop_matrix(cx: float, cy: float, w: float, h: float, angle_deg: float = 0.0,
                flip: bool = False) -> np.ndarray:
    """2 x 3 affine from photo to input coordinates for a box of ``w x h``
    centred at ``(cx, cy)``, rotated by ``angle_deg`` and optionally mirrored."""
    scale = INPUT_W / w
    rot = cv2.getRotationMatrix2D((0.0, 0.0), angle_deg, scale)  # about the box centre
    m = np.vstack([rot, [0.0, 0.0, 1.0]])
    if flip:
        m = np.diag([-1.0, 1.0, 1.0]) @ m
    centre = np.array([[1, 0, -cx], [0, 1, -cy], [0, 0, 1]], dtype=np.float64)
    to_input = np.array([[1, 0, INPUT_W / 2], [0, 1, INPUT_H / 2], [0, 0, 1]], dtype=np.float64)
    del h  # the aspect ratio is the input's: w alone sets the scale
    return (to_input @ m @ centre)[:2]


def box_matrix(box: tuple[float, float, float, float]) -> np.ndarray:
    """Photo-to-input affine for a person ``box`` (x0, y0, x1, y1): :func:`fit_box`
    with the default margin, then :func:`crop_matrix`."""
    return crop_matrix(*fit_box(box))


def crop_image(image: np.ndarray, matrix: np.ndarray, interpolation: int = cv2.INTER_LINEAR,
               border: tuple[float, ...] = (0.0, 0.0, 0.0, 0.0),
               size: tuple[int, int] = (INPUT_H, INPUT_W)) -> np.ndarray:
    """``image`` (H x W or H x W x C) resampled into the input frame (``size``:
    its height and width, the network's input unless :func:`shrunk`)."""
    return cv2.warpAffine(image, matrix, (size[1], size[0]), flags=interpolation,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=border)


def shrunk(matrix: np.ndarray, factor: float) -> tuple[np.ndarray, tuple[int, int]]:
    """The same crop at ``factor`` times the input's resolution: its matrix
    and its (height, width). Pixel centres stay aligned, so a label cropped
    either way falls on the same place in the person (a factor of 1 returns
    the crop as it is)."""
    return _scaled(matrix, factor), (round(INPUT_H * factor), round(INPUT_W * factor))


def output_matrix(matrix: np.ndarray) -> np.ndarray:
    """The photo-to-logits affine for a photo-to-input ``matrix`` (logits at
    1 / :data:`OUTPUT_STRIDE`, pixel centres aligned)."""
    return _scaled(matrix, 1.0 / OUTPUT_STRIDE)


def _scaled(matrix: np.ndarray, factor: float) -> np.ndarray:
    """``matrix`` followed by a scaling of its output by ``factor`` about
    pixel centres (not corners), so each output pixel stays centred on the
    same place."""
    offset = 0.5 * factor - 0.5
    down = np.array([[factor, 0, offset], [0, factor, offset], [0, 0, 1]], dtype=np.float64)
    return (down @ np.vstack([matrix, [0, 0, 1]]))[:2]


def labels_in_photo(logits: np.ndarray, matrix: np.ndarray, height: int, width: int) -> np.ndarray:
    """``height x width`` uint8 label map from ``C x h x w`` crop logits.

    The label is the best class of the logits interpolated bilinearly into
    the photo (smooth edges at any photo size); photo pixels outside the crop
    are label 0 (background). Interpolating every class at every pixel is
    most of the cost, and needless inside a garment: where the logits cell
    nearest a pixel and its eight neighbours all rank one class first, any
    mix of their logits does too. So only pixels near such a change of class
    are interpolated; the rest take their nearest cell's class. That halves
    the time and gives the same label map but for a few pixels in a
    hundred thousand, at near-ties, where OpenCV's remap and warp round a
    coordinate differently.
    """
    x0, y0, x1, y1 = _photo_extent(matrix, height, width)
    out = np.zeros((height, width), np.uint8)
    if x1 <= x0 or y1 <= y0:
        return out
    inverse = output_matrix(matrix)
    shifted = np.asarray(inverse @ np.array([[1, 0, x0], [0, 1, y0], [0, 0, 1]]), np.float64)
    size, nearest = (x1 - x0, y1 - y0), cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP
    cells = logits.argmax(axis=0).astype(np.uint8)
    around = np.ones((3, 3), np.uint8)
    mixed = (cv2.dilate(cells, around) != cv2.erode(cells, around)).astype(np.uint8)
    region = cv2.warpAffine(cells, shifted, size, flags=nearest, borderMode=cv2.BORDER_REPLICATE)
    edge = cv2.warpAffine(mixed, shifted, size, flags=nearest, borderMode=cv2.BORDER_REPLICATE)
    ys, xs = np.nonzero(edge)
    if ys.size:
        region[ys, xs] = _interpolated_labels(logits, shifted, xs, ys)
    out[y0:y1, x0:x1] = region
    return out


def _interpolated_labels(logits: np.ndarray, inverse: np.ndarray, xs: np.ndarray,
                         ys: np.ndarray) -> np.ndarray:
    """Best class of ``logits`` interpolated bilinearly at the region pixels
    ``(xs, ys)`` (``inverse`` takes them into the logits)."""
    points = np.stack([xs, ys, np.ones_like(xs)]).astype(np.float64)
    map_x, map_y = (inverse @ points).astype(np.float32)
    rows = -(-xs.size // REMAP_ROW)  # cv2.remap takes maps under 32767 pixels a side
    grid_x, grid_y = (np.resize(m, rows * REMAP_ROW).reshape(rows, REMAP_ROW)
                      for m in (map_x, map_y))
    hwc = np.ascontiguousarray(logits.transpose(1, 2, 0), dtype=np.float32)
    mixes = cv2.remap(hwc, grid_x, grid_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return mixes.reshape(rows * REMAP_ROW, -1)[:xs.size].argmax(axis=1)


def _photo_extent(matrix: np.ndarray, height: int, width: int) -> tuple[int, int, int, int]:
    """The photo rectangle the (unrotated) crop covers, clipped to the photo."""
    inv = cv2.invertAffineTransform(matrix)
    corners = np.array([[0, 0, 1], [INPUT_W, 0, 1], [0, INPUT_H, 1], [INPUT_W, INPUT_H, 1]],
                       dtype=np.float64) @ inv.T
    x0, y0 = np.floor(corners.min(axis=0)).astype(int)
    x1, y1 = np.ceil(corners.max(axis=0)).astype(int)
    return max(0, x0), max(0, y0), min(width, x1), min(height, y1)
