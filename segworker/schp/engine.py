"""The SCHP segmentation engine: official weights in, upper/lower masks out.

Per photo: preprocess (affine warp to the network's square input, BGR,
normalise), one forward pass (two with the flip test), postprocess (upsample
the fusion logits, warp them back to the photo, argmax), then the label sets
of the configured dataset make the two masks. Torch thread counts are the
calling process's business; this module never sets them.
"""

from __future__ import annotations

import contextlib
import logging
import time
from typing import Iterator

import numpy as np
import torch

from common.config import LabelSet, Settings
from common.logs import event
from segworker.engine import Engine, EngineLoadError, NoPersonError, Segmentation
from segworker.masks import label_masks, voc_palette
from segworker.schp.checkpoint import CheckpointInfo, load_model
from segworker.schp.datasets import DATASETS, flip_permutation
from segworker.schp.network import SchpNet
from segworker.schp.transforms import postprocess, preprocess

log = logging.getLogger(__name__)


def choose_device(requested: str) -> torch.device:
    """``cpu``, ``cuda`` (which must be available) or ``auto`` (cuda when available)."""
    if requested == "cpu":
        return torch.device("cpu")
    available = torch.cuda.is_available()
    if requested == "cuda" and not available:
        raise EngineLoadError(
            "workers.device (SCHP_DEVICE) is cuda but PyTorch sees no CUDA device "
            f"(torch {torch.__version__}, CUDA build {torch.version.cuda or 'none'}); "
            "use cpu or auto")
    if requested not in ("cuda", "auto"):
        raise EngineLoadError(f"workers.device (SCHP_DEVICE): unknown device {requested!r}")
    return torch.device("cuda" if available else "cpu")


class SchpEngine(Engine):
    """A loaded SCHP network plus its dataset's label sets.

    ``input_size`` defaults to the dataset's (512 ATR/Pascal, 473 LIP); tests
    pass a small one. ``flip`` averages with a mirrored pass (left/right
    channels swapped). ``bf16`` runs the forward under bfloat16 autocast
    (faster on CPUs with bf16 support; labels differ slightly from fp32).
    """

    name = "schp"

    def __init__(self, model: SchpNet, dataset: str, labels: LabelSet, *,
                 device: str | torch.device = "cpu", flip: bool = False, bf16: bool = False,
                 input_size: int | None = None, channels_last: bool = True,
                 checkpoint: CheckpointInfo | None = None) -> None:
        info = DATASETS[dataset]
        if model.num_classes != info.num_classes:
            raise EngineLoadError(f"SCHP network has {model.num_classes} classes; "
                                  f"{dataset} needs {info.num_classes}")
        self.device = torch.device(device)
        self.channels_last = channels_last
        memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.model = model.eval().to(self.device, memory_format=memory_format)
        self.dataset = dataset
        self.labels = labels
        self.flip = flip
        self.bf16 = bf16
        self.input_size = input_size or info.input_size
        self.checkpoint = checkpoint
        self._flip_order = flip_permutation(dataset)
        self._palette = voc_palette()

    @classmethod
    def from_settings(cls, settings: Settings) -> SchpEngine:
        """Load the weights named by ``segmentation.schp.weights`` (SCHP_WEIGHTS)
        onto the device of ``workers.device``. Raises :class:`EngineLoadError`
        with the whole story when that cannot be done."""
        schp = settings.segmentation.schp
        if not schp.weights:
            raise EngineLoadError("SCHP weights are not configured: set SCHP_WEIGHTS or "
                                  "segmentation.schp.weights to an official SCHP checkpoint "
                                  "(see docs/schp.md)")
        device = choose_device(settings.workers.device)
        started = time.perf_counter()
        model, info = load_model(settings.resolve(schp.weights), schp.dataset, device)
        labels = schp.labels.get(info.dataset)
        if labels is None:
            raise EngineLoadError(f"segmentation.schp.labels.{info.dataset}: no label sets "
                                  f"for the {info.dataset} weights in {info.path}")
        engine = cls(model, info.dataset, labels, device=device, flip=schp.flip,
                     bf16=schp.bf16, checkpoint=info)
        event(log, "schp_engine_loaded", load_ms=_ms(started), **engine.describe())
        return engine

    def segment(self, rgb: np.ndarray) -> Segmentation:
        """Masks for one upright ``H x W x 3`` uint8 RGB photo.

        Raises :class:`NoPersonError` when every pixel is labelled background.
        """
        if not (isinstance(rgb, np.ndarray) and rgb.dtype == np.uint8 and rgb.ndim == 3
                and rgb.shape[2] == 3):
            raise ValueError("segment() needs an H x W x 3 uint8 RGB array")
        height, width = rgb.shape[:2]
        t0 = time.perf_counter()
        batch, inverse = preprocess(rgb, self.input_size)
        t1 = time.perf_counter()
        logits = self.logits(batch)
        t2 = time.perf_counter()
        with torch.inference_mode():
            label_map = postprocess(logits, inverse, width, height, self.input_size)
        t3 = time.perf_counter()
        if not label_map.any():
            raise NoPersonError("no person found: SCHP labelled every pixel as background")
        upper, lower = label_masks(label_map, self.labels)
        timings = {"preprocess": _ms(t0, t1), "forward": _ms(t1, t2),
                   "postprocess": _ms(t2, t3)}
        return Segmentation(upper=upper, lower=lower, seg_map=label_map,
                            palette=list(self._palette), timings_ms=timings)

    def logits(self, batch: torch.Tensor) -> torch.Tensor:
        """Fusion logits ``[C, h, w]`` (float32, on the engine's device) for one
        preprocessed image ``[1, 3, S, S]``, flip-averaged when enabled."""
        batch = batch.to(self.device)
        if self.flip:
            batch = torch.cat([batch, batch.flip(-1)])
        if self.channels_last:
            batch = batch.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode(), self._autocast():
            out = self.model(batch)
        with torch.inference_mode():
            out = out.float()
            logits = out[0]
            if self.flip:
                mirrored = out[1][self._flip_order].flip(-1)
                logits = (logits + mirrored) / 2
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            return logits.contiguous()

    @contextlib.contextmanager
    def _autocast(self) -> Iterator[None]:
        if not self.bf16:
            yield
            return
        with torch.autocast(device_type=self.device.type, dtype=torch.bfloat16):
            yield

    def describe(self) -> dict:
        """Engine facts for /health and the start-up log."""
        info = self.checkpoint
        facts = {
            "engine": self.name,
            "dataset": self.dataset,
            "generation": info.generation if info else None,
            "device": str(self.device),
            "input_size": self.input_size,
            "weights": info.path if info else None,
            "known_release": info.known_release if info else False,
            "release": info.release.file_name if info and info.release else None,
            "sha256": info.sha256 if info else None,
            "flip": self.flip,
            "bf16": self.bf16,
        }
        if self.selected_because:
            facts["selected_because"] = self.selected_because
        return facts


def _ms(start: float, end: float | None = None) -> float:
    end = time.perf_counter() if end is None else end
    return round((end - start) * 1000.0, 1)
