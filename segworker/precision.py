"""Which precision an engine's network runs in, and why: one rule for every engine.

Pure decisions (the facts about the machine come in as arguments), so every
rule is testable without the hardware. ``auto`` is bf16 where the device has
native bf16 matrix units, else fp32: on CPU that is AMX-BF16 or AVX512-BF16
(without them bf16 is emulated and slower than fp32); on CUDA it is compute
capability 8.0+ (Ampere and later tensor cores), where bf16 needs no loss
scaling and keeps fp32's range. SCHP's setting is ``segmentation.schp.precision``
(SCHP_PRECISION, :mod:`segworker.schp.precision` adds its backend and its
deprecated switch); the parser's is ``segmentation.parser.precision``
(PARSER_PRECISION).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

PRECISIONS = ("auto", "fp32", "bf16")

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


def choose_precision(requested: str, device_type: str, *,
                     cpu_flags: Iterable[str] = (),
                     cuda_capability: tuple[int, int] | None = None,
                     setting: str = "SCHP_PRECISION") -> Choice:
    """fp32 or bf16 for ``requested`` (auto | fp32 | bf16) on ``device_type``
    (cpu | cuda), given the CPU's flags or the GPU's compute capability.
    ``setting`` is the variable the reasons name (the parser has its own)."""
    if requested in ("fp32", "bf16"):
        return Choice(requested, f"{setting}={requested}")
    if requested != "auto":
        raise ValueError(f"unknown precision {requested!r}; use one of {', '.join(PRECISIONS)}")
    if device_type == "cuda":
        if cuda_capability is not None and tuple(cuda_capability) >= BF16_CUDA_CAPABILITY:
            major, minor = cuda_capability
            return Choice("bf16", f"{setting}=auto and the GPU (compute capability "
                                  f"{major}.{minor}) has bf16 tensor cores")
        return Choice("fp32", f"{setting}=auto and the GPU has no bf16 tensor cores "
                              "(compute capability below 8.0)")
    found = [flag for flag in BF16_CPU_FLAGS if flag in set(cpu_flags)]
    if found:
        return Choice("bf16", f"{setting}=auto and the CPU has bf16 matrix units "
                              f"({', '.join(found)})")
    return Choice("fp32", f"{setting}=auto and the CPU has no bf16 matrix units "
                          "(neither AMX-BF16 nor AVX512-BF16)")


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
