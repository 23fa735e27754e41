"""One photo through the parser network: crop, normalise, forward, labels back.

Pure functions shared by the engine (:mod:`segworker.parser.engine`) and the
training command's dev-set evaluation, so that what is measured during
training is exactly what the service serves.
"""

from __future__ import annotations

import numpy as np
import torch

from segworker.parser import crop
from segworker.parser.person import person_box

#: Per-channel RGB mean and standard deviation the network's input is normalised with.
RGB_MEAN = np.array(crop.PAD_RGB, dtype=np.float32)
RGB_STD = np.array([58.0, 57.0, 57.0], dtype=np.float32)


def photo_matrix(prob: np.ndarray) -> np.ndarray | None:
    """Photo-to-input affine around the main person of a photo whose person
    probability is ``prob``, or None when the person model saw nobody."""
    box = person_box(prob)
    if box is None:
        return None
    return crop.crop_matrix(*crop.fit_box(box))


def network_input(rgb: np.ndarray, prob: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """``4 x INPUT_H x INPUT_W`` float32: normalised RGB and person probability
    of the crop ``matrix`` selects."""
    pixels = crop.crop_image(rgb, matrix, border=tuple(float(v) for v in crop.PAD_RGB))
    person = crop.crop_image(prob.astype(np.float32), matrix)
    planes = (pixels.astype(np.float32) - RGB_MEAN) / RGB_STD
    return np.concatenate([planes.transpose(2, 0, 1), person[None]], axis=0)


def forward(net: torch.nn.Module, inputs: np.ndarray, bf16: bool = False) -> np.ndarray:
    """``C x h x w`` float32 logits for one ``4 x H x W`` input."""
    x = torch.from_numpy(np.ascontiguousarray(inputs))[None]
    x = x.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        logits = net(x)
    return logits[0].float().numpy()


def parse(net: torch.nn.Module, rgb: np.ndarray, prob: np.ndarray) -> np.ndarray:
    """``H x W`` uint8 parser class ids for an RGB photo and its person
    probability (all background when the person model saw nobody)."""
    matrix = photo_matrix(prob)
    if matrix is None:
        return np.zeros(rgb.shape[:2], np.uint8)
    logits = forward(net, network_input(rgb, prob, matrix))
    return crop.labels_in_photo(logits, matrix, rgb.shape[0], rgb.shape[1])
