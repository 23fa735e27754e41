"""Duration histograms kept by the broker and the uploader and carried in the broker's
stats, from which the front end's ``/metrics`` makes Prometheus histograms.

Pure data: fixed bucket bounds (:data:`BUCKETS_S`, the same for every histogram so
they can be compared and summed), cumulative counts per bound, a sum and a count.
The wire/stats form (:meth:`Histogram.snapshot`) is::

    {"le": [0.005, ...], "counts": [cumulative count per bound], "sum": seconds, "count": n}

Observations with a value that is not a finite number >= 0 are ignored: the
figures come from other processes (a remote worker among them).
"""

from __future__ import annotations

import itertools
import math
from bisect import bisect_left
from dataclasses import dataclass, field
from typing import Any

#: Upper bounds, in seconds, from a fast person-model stage to a slow upload with retries.
BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
             120.0, 300.0, 600.0)


@dataclass
class Histogram:
    """One histogram over :data:`BUCKETS_S` (non-cumulative counts inside)."""

    counts: list[int] = field(default_factory=lambda: [0] * len(BUCKETS_S))
    total: float = 0.0
    count: int = 0

    def observe(self, seconds: Any) -> None:
        """Count one duration (ignored unless a finite number >= 0)."""
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
            return
        if not math.isfinite(seconds) or seconds < 0:
            return
        slot = bisect_left(BUCKETS_S, seconds)
        if slot < len(BUCKETS_S):
            self.counts[slot] += 1
        self.total += seconds
        self.count += 1

    def snapshot(self) -> dict[str, Any]:
        """The wire/stats form (see the module docstring)."""
        cumulative, running = [], 0
        for n in self.counts:
            running += n
            cumulative.append(running)
        return {"le": list(BUCKETS_S), "counts": cumulative, "sum": round(self.total, 6),
                "count": self.count}


class Histograms:
    """Histograms by name, made on first use."""

    def __init__(self) -> None:
        self.by_name: dict[str, Histogram] = {}

    def observe(self, name: str, seconds: Any) -> None:
        self.by_name.setdefault(name, Histogram()).observe(seconds)

    def snapshot(self) -> dict[str, dict[str, Any]]:
        return {name: h.snapshot() for name, h in sorted(self.by_name.items())}


def valid_snapshot(value: Any) -> bool:
    """True for a map in the :meth:`Histogram.snapshot` form (checked before use)."""
    if not isinstance(value, dict):
        return False
    le, counts = value.get("le"), value.get("counts")
    if not (isinstance(le, list) and isinstance(counts, list) and len(le) == len(counts)):
        return False
    numbers = [*le, value.get("sum")]
    if not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in numbers):
        return False
    ints = [*counts, value.get("count")]
    if not all(isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in ints):
        return False
    return all(a <= b for a, b in itertools.pairwise(counts)) and (not counts or
                                                                counts[-1] <= value["count"])
