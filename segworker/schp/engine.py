"""The SCHP segmentation engine: official weights in, upper/lower masks out.

Per photo: preprocess (affine warp to the network's square input, BGR,
normalise), one forward pass (two with the flip test), postprocess (upsample
the fusion logits, warp them back to the photo, argmax), then the label sets
of the configured dataset make the two masks. Thread counts are the calling
process's business (torch.set_num_threads; the OpenVINO backend follows it);
this module never sets them. How the forward runs (precision, backend) is
chosen by :func:`choose_runtime` from the rules in :mod:`segworker.precision` and
:mod:`segworker.schp.precision`.
"""

from __future__ import annotations

import logging
import time

import numpy as np
import torch

from common.config import Device, LabelSet, Settings
from common.logs import event
from segworker.engine import Engine, EngineLoadError, NoPersonError, Segmentation
from segworker.masks import label_masks, voc_palette
from segworker.precision import Choice, choose_precision, cpu_flags
from segworker.schp.checkpoint import CheckpointInfo, load_model
from segworker.schp.datasets import DATASETS, flip_permutation
from segworker.schp.model_cache import ModelCache
from segworker.schp.network import SchpNet
from segworker.schp.precision import choose_backend, requested_precision
from segworker.schp.runtime import EagerRunner, OpenVinoRunner
from segworker.schp.transforms import postprocess, preprocess

log = logging.getLogger(__name__)

#: Folder under STATE_DIR for converted models (see segworker.schp.model_cache).
CACHE_SUBDIR = "schp/compiled"


def choose_device(requested: Device) -> torch.device:
    """``cpu``, ``cuda`` (which must be available) or ``auto`` (cuda when available)."""
    if requested == "cpu":
        return torch.device("cpu")
    available = torch.cuda.is_available()
    if requested == "cuda" and not available:
        raise EngineLoadError(
            "workers.device (SCHP_DEVICE) is cuda but PyTorch sees no CUDA device "
            f"(torch {torch.__version__}, CUDA build {torch.version.cuda or 'none'}); "
            "use cpu or auto")
    return torch.device("cuda" if available else "cpu")


def choose_runtime(precision: str, bf16: bool | None, backend: str,
                   device: torch.device) -> tuple[Choice, Choice]:
    """The precision and backend for these settings on ``device`` (logged, with
    why); raises :class:`EngineLoadError` when the backend cannot run here."""
    requested, deprecation = requested_precision(precision, bf16)
    if deprecation:
        event(log, "setting_deprecated", logging.WARNING, setting="SCHP_BF16",
              message=deprecation)
    capability = torch.cuda.get_device_capability(device) if device.type == "cuda" else None
    chosen = choose_precision(requested, device.type, cpu_flags=cpu_flags(),
                              cuda_capability=capability)
    if deprecation:
        chosen = Choice(chosen.value, f"SCHP_BF16={'true' if bf16 else 'false'} (deprecated)"
                        if precision == "auto" else chosen.because)
    try:
        runs_on = choose_backend(backend, device.type, _openvino_importable())
    except ValueError as exc:
        raise EngineLoadError(str(exc)) from None
    return chosen, runs_on


def _openvino_importable() -> bool:
    try:
        import openvino  # noqa: F401
    except ImportError:
        return False
    return True


class SchpEngine(Engine):
    """A loaded SCHP network on a backend, plus its dataset's label sets.

    ``input_size`` defaults to the dataset's (512 ATR/Pascal, 473 LIP); tests
    pass a small one. ``flip`` averages with a mirrored pass (left/right
    channels swapped). ``precision`` is ``fp32`` or ``bf16`` (bf16 is faster
    on devices with bf16 matrix units; labels differ slightly from fp32).
    ``backend`` is ``eager`` (the PyTorch module) or ``openvino`` (a compiled
    CPU graph, cached in ``cache`` when given). ``because`` holds the reasons
    for the precision and backend (:meth:`from_settings` fills it).
    """

    name = "schp"

    def __init__(self, model: SchpNet, dataset: str, labels: LabelSet, *,
                 device: str | torch.device = "cpu", flip: bool = False,
                 precision: str = "fp32", backend: str = "eager",
                 input_size: int | None = None, channels_last: bool = True,
                 checkpoint: CheckpointInfo | None = None, cache: ModelCache | None = None,
                 because: dict[str, str] | None = None) -> None:
        info = DATASETS[dataset]
        if model.num_classes != info.num_classes:
            raise EngineLoadError(f"SCHP network has {model.num_classes} classes; "
                                  f"{dataset} needs {info.num_classes}")
        if precision not in ("fp32", "bf16"):
            raise ValueError(f"precision must be fp32 or bf16, got {precision!r}")
        self.device = torch.device(device)
        self.dataset = dataset
        self.labels = labels
        self.flip = flip
        self.precision = precision
        self.input_size = input_size or info.input_size
        self.checkpoint = checkpoint
        self.because = dict(because or {})
        self.runner = self._runner(model, backend, channels_last, cache)
        self._flip_order = flip_permutation(dataset)
        self._palette = voc_palette()

    def _runner(self, model: SchpNet, backend: str, channels_last: bool,
                cache: ModelCache | None) -> EagerRunner | OpenVinoRunner:
        if backend == "eager":
            return EagerRunner(model, self.device, self.precision, channels_last)
        if backend != "openvino" or self.device.type != "cpu":
            raise ValueError(f"backend {backend!r} cannot run on {self.device.type}")
        sha = self.checkpoint.sha256 if self.checkpoint else None
        try:
            return OpenVinoRunner(model.cpu(), self.input_size, self.precision, cache=cache,
                                  weights_sha256=sha)
        except (RuntimeError, MemoryError) as exc:  # conversion or compilation failed
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
            raise EngineLoadError(f"OpenVINO could not compile the SCHP network ({first}); "
                                  "set SCHP_BACKEND=eager to run it in PyTorch") from None

    @property
    def backend(self) -> str:
        return self.runner.backend

    @classmethod
    def from_settings(cls, settings: Settings) -> SchpEngine:
        """Load the weights named by ``segmentation.schp.weights`` (SCHP_WEIGHTS)
        onto the device of ``workers.device``, at the precision and on the backend
        the settings select. Raises :class:`EngineLoadError` with the whole story
        when that cannot be done."""
        schp = settings.segmentation.schp
        if not schp.weights:
            raise EngineLoadError("SCHP weights are not configured: set SCHP_WEIGHTS or "
                                  "segmentation.schp.weights to an official SCHP checkpoint "
                                  "(see docs/schp.md)")
        device = choose_device(settings.workers.device)
        precision, backend = choose_runtime(schp.precision, schp.bf16, schp.backend, device)
        started = time.perf_counter()
        model, info = load_model(settings.resolve(schp.weights), schp.dataset, device)
        labels = schp.labels.get(info.dataset)
        if labels is None:
            raise EngineLoadError(f"segmentation.schp.labels.{info.dataset}: no label sets "
                                  f"for the {info.dataset} weights in {info.path}")
        cache = ModelCache(settings.state_dir / CACHE_SUBDIR)
        engine = cls(model, info.dataset, labels, device=device, flip=schp.flip,
                     precision=precision.value, backend=backend.value, checkpoint=info,
                     cache=cache, because={"precision_because": precision.because,
                                           "backend_because": backend.because})
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
        if self.flip:
            batch = torch.cat([batch, batch.flip(-1)])
        out = self.runner(batch)
        with torch.inference_mode():
            logits = out[0]
            if self.flip:
                mirrored = out[1][self._flip_order].flip(-1)
                logits = (logits + mirrored) / 2
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            return logits.contiguous()

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
            "precision": self.precision,
            "backend": self.backend,
            **self.because,
            **self.runner.facts,
        }
        if self.selected_because:
            facts["selected_because"] = self.selected_because
        return facts


def _ms(start: float, end: float | None = None) -> float:
    end = time.perf_counter() if end is None else end
    return round((end - start) * 1000.0, 1)
