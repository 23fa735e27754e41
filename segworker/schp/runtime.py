"""The SCHP forward pass on a backend: eager PyTorch or a compiled OpenVINO graph.

A runner maps a normalised batch ``[N, 3, S, S]`` to float32 fusion logits
``[N, C, S/4, S/4]`` on the engine's device. Both keep fp32 faithful to the
reference network (OpenVINO's fp32 graph agrees with eager on >= 99.9 % of
labels; tested), and both run bf16 where asked: eager under autocast, OpenVINO
with its bf16 inference-precision hint (AMX/AVX512-BF16 kernels).

OpenVINO runs on as many threads as torch is set to use in this process
(``torch.get_num_threads()``, which the worker sets from WORKER_THREADS), so
one setting governs both. Its converted model comes from the on-disk cache
when a valid entry exists (see :mod:`segworker.schp.model_cache`).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from common.logs import event
from segworker.schp.model_cache import ModelCache
from segworker.schp.network import SchpNet

log = logging.getLogger(__name__)

#: The network's source files: a change to them changes the graph, so it is in the cache key.
NETWORK_SOURCES = ("network.py", "layers.py")

#: OpenVINO's names for the two precisions.
OV_PRECISION = {"fp32": "f32", "bf16": "bf16"}


class EagerRunner:
    """The PyTorch module as it is (the reference path, and the GPU path)."""

    backend = "eager"

    def __init__(self, model: SchpNet, device: torch.device, precision: str,
                 channels_last: bool = True) -> None:
        self.device, self.precision, self.channels_last = device, precision, channels_last
        memory_format = torch.channels_last if channels_last else torch.contiguous_format
        # Module.to takes memory_format at run time; torch's overloads omit it.
        self.model = model.eval().to(device, memory_format=memory_format)  # type: ignore[call-overload]
        self.facts: dict[str, Any] = {}

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        batch = batch.to(self.device)
        if self.channels_last:
            batch = batch.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode(), self._autocast():
            out = self.model(batch)
        with torch.inference_mode():
            return out.float()

    @contextlib.contextmanager
    def _autocast(self) -> Iterator[None]:
        if self.precision != "bf16":
            yield
            return
        with torch.autocast(device_type=self.device.type, dtype=torch.bfloat16):
            yield


class OpenVinoRunner:
    """A compiled OpenVINO CPU graph for one input size (batch 1; a flip-test
    batch of 2 runs as two inferences)."""

    backend = "openvino"

    def __init__(self, model: SchpNet, input_size: int, precision: str, *,
                 cache: ModelCache | None = None, weights_sha256: str | None = None,
                 threads: int | None = None) -> None:
        import openvino as ov  # only when this backend is chosen

        self.device, self.precision, self.input_size = torch.device("cpu"), precision, input_size
        self.threads = threads or torch.get_num_threads()
        self.key = cache_key(model, input_size, precision, weights_sha256)
        started = time.perf_counter()
        ov_model, self.facts = _load_or_convert(ov, model, input_size, self.key, cache)
        self.facts["threads"] = self.threads
        compiled = ov.Core().compile_model(ov_model, "CPU", {
            "INFERENCE_NUM_THREADS": self.threads,
            "INFERENCE_PRECISION_HINT": OV_PRECISION[precision],
            "PERFORMANCE_HINT": "LATENCY",
            "NUM_STREAMS": 1,
            # The worker process is already pinned to its cores (segworker.affinity);
            # OpenVINO's own pinning would tie its thread to one core of that set, or
            # to a core another process is busy on, and run at half speed.
            "ENABLE_CPU_PINNING": False,
        })
        self._request = compiled.create_infer_request()
        self.facts["ready_s"] = round(time.perf_counter() - started, 2)

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        images = batch.detach().to("cpu", torch.float32).contiguous().numpy()
        outs = [np.array(self._request.infer({0: image[None]})[0]) for image in images]
        return torch.from_numpy(np.concatenate(outs)).float()


def cache_key(model: SchpNet, input_size: int, precision: str,
              weights_sha256: str | None) -> dict[str, Any]:
    """Everything that changes the compiled graph (see :mod:`model_cache`)."""
    import openvino as ov

    norms = model.norm_layers().values()
    return {
        "backend": "openvino",
        "precision": precision,
        "input_size": input_size,
        "weights_sha256": weights_sha256 or state_sha256(model),
        "abs_weight_norms": all(n.abs_weight for n in norms),
        "num_classes": model.num_classes,
        "openvino": ov.get_version(),
        "torch": torch.__version__,
        "network_source": network_source_sha256(),
    }


def state_sha256(model: torch.nn.Module) -> str:
    """SHA-256 over the model's state (for networks not loaded from a file)."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().to("cpu").contiguous().numpy().tobytes())
    return digest.hexdigest()


@functools.lru_cache(maxsize=1)
def network_source_sha256() -> str:
    here = Path(__file__).parent
    digest = hashlib.sha256()
    for name in NETWORK_SOURCES:
        digest.update((here / name).read_bytes())
    return digest.hexdigest()[:16]


def _load_or_convert(ov: Any, model: SchpNet, input_size: int, key: dict[str, Any],
                     cache: ModelCache | None) -> tuple[Any, dict[str, Any]]:
    """The OpenVINO model from the cache, or converted now (and stored)."""
    facts: dict[str, Any] = {"cache": "off"}
    if cache is not None:
        found = cache.lookup(key)
        if found.path is not None:
            started = time.perf_counter()
            try:
                ov_model = ov.Core().read_model(str(found.path / "model.xml"))
                facts = {"cache": "hit", "cache_load_s": round(time.perf_counter() - started, 2),
                         "cache_entry": str(found.path)}
                event(log, "schp_cache_hit", entry=str(found.path), **_brief(key))
                return ov_model, facts
            except RuntimeError as exc:  # files intact but unreadable (e.g. another build)
                found = type(found)(None, f"OpenVINO cannot read it ({str(exc)[:200]})")
                cache.remove(key)
        if found.problem:
            event(log, "schp_cache_rebuild", logging.WARNING, problem=found.problem,
                  **_brief(key))
        facts = {"cache": "built"}
    ov_model, convert_s = _convert(ov, model, input_size, key)
    facts["compile_s"] = convert_s
    if cache is not None:
        entry = cache.store(key, lambda folder: ov.save_model(
            ov_model, str(folder / "model.xml"), compress_to_fp16=False))
        facts["cache"] = "built" if entry else "unwritable"
        if entry:
            facts["cache_entry"] = str(entry)
    return ov_model, facts


def _convert(ov: Any, model: SchpNet, input_size: int, key: dict[str, Any]) -> tuple[Any, float]:
    event(log, "schp_compiling", note="converting SCHP to OpenVINO; this takes a while the "
          "first time (the result is cached)", **_brief(key))
    started = time.perf_counter()
    example = torch.zeros(1, 3, input_size, input_size)
    with torch.no_grad(), warnings.catch_warnings():
        # OpenVINO traces with TorchScript, which warns it is deprecated: not for operators.
        warnings.simplefilter("ignore", DeprecationWarning)
        ov_model = ov.convert_model(model.eval().float(), example_input=example,
                                    input=[(1, 3, input_size, input_size)])
    seconds = round(time.perf_counter() - started, 2)
    event(log, "schp_compiled", compile_s=seconds, **_brief(key))
    return ov_model, seconds


def _brief(key: dict[str, Any]) -> dict[str, Any]:
    return {k: key[k] for k in ("backend", "precision", "input_size", "openvino")}
