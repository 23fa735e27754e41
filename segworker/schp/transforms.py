"""SCHP pre- and post-processing, as the reference extractor does it (SPEC §10-11).

Pre: the whole photo is the person box ``[0, 0, w-1, h-1]``; an affine warp
(OpenCV, uint8, black padding) maps its long side's first and last pixel
centres onto 0 and S-1 of the square network input; BGR channels are scaled
to [0, 1] and normalised with the BGR-ordered ImageNet statistics.

Post: fusion logits are upsampled to S x S (bilinear, align_corners=True),
warped back to the photo with the inverse affine (OpenCV, float32, zeros
outside), and the label is the argmax (ties go to the lowest label id).
"""

from __future__ import annotations

import cv2
import numpy as np
import torch

from segworker.schp.layers import upsample

#: Per-channel mean of the network input, in B, G, R order (values in [0, 1]).
MEAN_BGR = (0.406, 0.456, 0.485)

#: Per-channel standard deviation of the network input, in B, G, R order.
STD_BGR = (0.225, 0.224, 0.229)

#: Most channels handed to one cv2.warpAffine call (OpenCV's documented limit is 4;
#: larger counts are tried first and fall back to groups of this size).
WARP_GROUP = 4

#: Largest warped-logits array (bytes) built in one piece; for bigger photos the
#: argmax runs over a few channels at a time, so memory stays ~22 bytes per pixel.
WHOLE_WARP_BYTES = 256 * 1024 * 1024


def affine_matrices(width: int, height: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """``(forward, inverse)`` 2x3 affine matrices between a ``width x height``
    photo and the ``size x size`` network input.

    Built like the reference: box ``[0, 0, w-1, h-1]`` made square around its
    centre, three float32 point pairs (centre, centre moved up by half the box,
    that offset turned 90 degrees) solved by ``cv2.getAffineTransform``; the
    inverse solves the swapped pairs rather than inverting the matrix.
    """
    center = np.array([(width - 1) * 0.5, (height - 1) * 0.5], dtype=np.float32)
    box = np.float32(max(width - 1, height - 1, 1))  # aspect ratio 1: both sides the long one
    dst_side = np.float32(size - 1)
    src = _three_points(center, box)
    dst = _three_points(np.array([dst_side * 0.5, dst_side * 0.5], dtype=np.float32), dst_side)
    return cv2.getAffineTransform(src, dst), cv2.getAffineTransform(dst, src)


def _three_points(center: np.ndarray, side: np.float32) -> np.ndarray:
    up = np.array([0.0, side * -0.5], dtype=np.float32)
    second = center + up
    offset = center - second
    third = second + np.array([-offset[1], offset[0]], dtype=np.float32)
    return np.stack([center, second, third]).astype(np.float32)


def preprocess(rgb: np.ndarray, size: int) -> tuple[torch.Tensor, np.ndarray]:
    """Network input ``[1, 3, size, size]`` (normalised BGR) for an ``H x W x 3``
    uint8 RGB photo, and the inverse affine for :func:`postprocess`."""
    bgr, inverse = warp_photo(rgb, size)
    return normalise(bgr), inverse


def warp_photo(rgb: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``size x size x 3`` uint8 **BGR** network input before normalisation
    (what the reference dataset class yields), and the inverse affine."""
    height, width = rgb.shape[:2]
    forward, inverse = affine_matrices(width, height, size)
    warped = cv2.warpAffine(rgb, forward, (size, size), flags=cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))
    # Warping is per channel, so swapping to BGR after the warp gives the same
    # pixels as warping a BGR photo, on far fewer pixels.
    return np.ascontiguousarray(warped[:, :, ::-1]), inverse


def normalise(bgr: np.ndarray) -> torch.Tensor:
    """``[1, 3, H, W]`` float32: uint8 BGR HWC scaled to [0, 1], minus
    :data:`MEAN_BGR`, divided by :data:`STD_BGR` (as torchvision's ToTensor +
    Normalize compute it)."""
    tensor = torch.from_numpy(bgr).permute(2, 0, 1).float().div(255)
    mean = torch.tensor(MEAN_BGR, dtype=torch.float32)[:, None, None]
    std = torch.tensor(STD_BGR, dtype=torch.float32)[:, None, None]
    return tensor.sub_(mean).div_(std).unsqueeze(0).contiguous()


def upsample_logits(logits: torch.Tensor, size: int) -> np.ndarray:
    """``size x size x C`` float32 numpy logits from ``[C, h, w]`` network logits
    (bilinear, align_corners=True), on the CPU."""
    up = upsample(logits.float().unsqueeze(0), (size, size))[0]
    return np.ascontiguousarray(up.permute(1, 2, 0).cpu().numpy())


def warp_logits(logits_hwc: np.ndarray, inverse: np.ndarray, width: int,
                height: int) -> np.ndarray:
    """``height x width x C`` logits warped back to the photo with ``inverse``
    (INTER_LINEAR, zeros outside): the same values as warping each channel on
    its own, with as few OpenCV calls as possible."""
    def warp(block: np.ndarray) -> np.ndarray:
        out = cv2.warpAffine(block, inverse, (width, height), flags=cv2.INTER_LINEAR,
                             borderMode=cv2.BORDER_CONSTANT, borderValue=(0.0, 0.0, 0.0, 0.0))
        return out.reshape(height, width, -1)

    try:
        return warp(logits_hwc)
    except cv2.error:  # an OpenCV build that caps channels per call
        blocks = [np.ascontiguousarray(logits_hwc[:, :, i:i + WARP_GROUP])
                  for i in range(0, logits_hwc.shape[2], WARP_GROUP)]
        return np.concatenate([warp(b) for b in blocks], axis=2)


def warped_argmax(logits_hwc: np.ndarray, inverse: np.ndarray, width: int,
                  height: int) -> np.ndarray:
    """``height x width`` uint8 argmax of the warped-back logits (ties go to the
    lowest label). Large photos are done :data:`WARP_GROUP` channels at a time
    with a running maximum, which gives the same labels with less memory."""
    channels = logits_hwc.shape[2]
    if width * height * channels * 4 <= WHOLE_WARP_BYTES:
        return np.argmax(warp_logits(logits_hwc, inverse, width, height), axis=2).astype(np.uint8)
    best = np.full((height, width), -np.inf, dtype=np.float32)
    labels = np.zeros((height, width), dtype=np.uint8)
    for start in range(0, channels, WARP_GROUP):
        block = warp_logits(np.ascontiguousarray(logits_hwc[:, :, start:start + WARP_GROUP]),
                            inverse, width, height)
        for offset in range(block.shape[2]):
            plane = block[:, :, offset]
            better = plane > best  # strictly greater: a tie keeps the lower label
            np.copyto(best, plane, where=better)
            np.copyto(labels, np.uint8(start + offset), where=better)
    return labels


def postprocess(logits: torch.Tensor, inverse: np.ndarray, width: int, height: int,
                size: int) -> np.ndarray:
    """``height x width`` uint8 label map from ``[C, h, w]`` fusion logits."""
    return warped_argmax(upsample_logits(logits, size), inverse, width, height)
