"""Which precision and which backend run the SCHP forward pass, and why.

Pure decisions (the facts about the machine come in as arguments), so every
rule is testable without the hardware:

* **precision** ``segmentation.schp.precision`` (SCHP_PRECISION) = auto | fp32 | bf16.
  ``auto`` is bf16 where the device has native bf16 matrix units, else fp32:
  on CPU that is AMX-BF16 or AVX512-BF16 (without them bf16 is emulated and
  slower than fp32); on CUDA it is compute capability 8.0+ (Ampere and later
  tensor cores), where bf16 needs no loss scaling and keeps fp32's range.
  The deprecated ``SCHP_BF16`` (``segmentation.schp.bf16``) still works: true
  means bf16, false means fp32, and it is reported so the log can say so.
* **backend** ``segmentation.schp.backend`` (SCHP_BACKEND) = auto | openvino | eager.
  ``auto`` is OpenVINO on CPU (a compiled graph, about 1.3x faster in fp32 and
  7x in bf16 than eager fp32 at one thread) and eager PyTorch on CUDA
  (OpenVINO has no CUDA device); see docs/schp.md for the measurements.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

PRECISIONS = ("auto", "fp32", "bf16")
BACKENDS = ("auto", "openvino", "eager")

#: CPU flags (as /proc/cpuinfo spells them) that mean native bf16 matrix maths.
BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")

#: Lowest CUDA compute capability with bf16 tensor cores (Ampere).
BF16_CUDA_CAPABILITY = (8, 0)

#: Where Linux lists the CPU's instruction-set flags.
CPUINFO = Path("/proc/cpuinfo")


@dataclass(frozen=True)
class Choice:
    """A decision and the sentence that explains it (for /health and the logs)."""

    value: str
    because: str


def requested_precision(precision: str, bf16: bool | None) -> tuple[str, str | None]:
    """The precision asked for, folding in the deprecated bf16 switch.

    Returns ``(requested, deprecation)``: ``deprecation`` is a log line when the
    old name was used (the configuration check has already refused a bf16
    switch that contradicts an explicit precision).
    """
    if bf16 is None:
        return precision, None
    old = "bf16" if bf16 else "fp32"
    note = (f"SCHP_BF16 (segmentation.schp.bf16) is deprecated: use SCHP_PRECISION={old} "
            "(segmentation.schp.precision) instead")
    return (old if precision == "auto" else precision), note


def choose_precision(requested: str, device_type: str, *,
                     cpu_flags: Iterable[str] = (),
                     cuda_capability: tuple[int, int] | None = None) -> Choice:
    """fp32 or bf16 for ``requested`` (auto | fp32 | bf16) on ``device_type``
    (cpu | cuda), given the CPU's flags or the GPU's compute capability."""
    if requested in ("fp32", "bf16"):
        return Choice(requested, f"SCHP_PRECISION={requested}")
    if requested != "auto":
        raise ValueError(f"unknown precision {requested!r}; use one of {', '.join(PRECISIONS)}")
    if device_type == "cuda":
        if cuda_capability is not None and tuple(cuda_capability) >= BF16_CUDA_CAPABILITY:
            major, minor = cuda_capability
            return Choice("bf16", f"SCHP_PRECISION=auto and the GPU (compute capability "
                                  f"{major}.{minor}) has bf16 tensor cores")
        return Choice("fp32", "SCHP_PRECISION=auto and the GPU has no bf16 tensor cores "
                              "(compute capability below 8.0)")
    found = [flag for flag in BF16_CPU_FLAGS if flag in set(cpu_flags)]
    if found:
        return Choice("bf16", f"SCHP_PRECISION=auto and the CPU has bf16 matrix units "
                              f"({', '.join(found)})")
    return Choice("fp32", "SCHP_PRECISION=auto and the CPU has no bf16 matrix units "
                          "(neither AMX-BF16 nor AVX512-BF16)")


def choose_backend(requested: str, device_type: str, openvino_available: bool) -> Choice:
    """openvino or eager for ``requested`` (auto | openvino | eager) on ``device_type``.

    Raises ``ValueError`` (worded for an operator) when the request cannot be met.
    """
    if requested not in BACKENDS:
        raise ValueError(f"unknown backend {requested!r}; use one of {', '.join(BACKENDS)}")
    if requested == "eager":
        return Choice("eager", "SCHP_BACKEND=eager")
    if requested == "openvino":
        if device_type != "cpu":
            raise ValueError("segmentation.schp.backend (SCHP_BACKEND) is openvino but the "
                             f"device is {device_type}; OpenVINO runs SCHP on CPU only "
                             "(use auto or eager on a GPU)")
        if not openvino_available:
            raise ValueError("segmentation.schp.backend (SCHP_BACKEND) is openvino but the "
                             "openvino package cannot be imported (run ./setup.sh)")
        return Choice("openvino", "SCHP_BACKEND=openvino")
    if device_type != "cpu":
        return Choice("eager", f"SCHP_BACKEND=auto and the device is {device_type} "
                               "(OpenVINO runs on CPU only)")
    if not openvino_available:
        return Choice("eager", "SCHP_BACKEND=auto but the openvino package cannot be "
                               "imported (run ./setup.sh); eager PyTorch is slower")
    return Choice("openvino", "SCHP_BACKEND=auto and the device is cpu (OpenVINO's "
                              "compiled graph is the fastest CPU path)")


def cpu_flags(cpuinfo: Path = CPUINFO) -> frozenset[str]:
    """The CPU's instruction-set flags (empty when they cannot be read)."""
    try:
        text = cpuinfo.read_text(encoding="ascii", errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return frozenset()
