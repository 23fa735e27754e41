"""The interface every segmentation engine implements.

The rest of the service only sees :class:`Engine` and :class:`Segmentation`:
it never knows which engine ran. Engines take an upright ``H x W x 3`` uint8
RGB array (see :func:`common.photo.decode_rgb`) and return boolean masks of
the same height and width.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field

import numpy as np


class EngineError(Exception):
    """A job-level failure with a machine-readable ``reason``.

    ``retryable`` says whether another attempt (on another worker) could help.
    """

    reason = "engine_error"
    retryable = False

    def __init__(self, message: str, reason: str | None = None) -> None:
        super().__init__(message)
        if reason is not None:
            self.reason = reason


class NoPersonError(EngineError):
    """The photo shows no person; the job fails with reason ``no_person``."""

    reason = "no_person"


class EngineLoadError(Exception):
    """The engine cannot start (missing or broken weights, bad device, ...).

    The message is the whole story for an operator: it names the file or
    setting and what is wrong, with no traceback needed.
    """


@dataclass
class Segmentation:
    """What an engine produces for one photo."""

    upper: np.ndarray                   #: H x W bool
    lower: np.ndarray                   #: H x W bool
    seg_map: np.ndarray | None = None   #: H x W uint8 label ids, when the engine has labels
    palette: list[int] | None = None    #: 768 ints for ``seg_map`` as a palette PNG
    timings_ms: dict[str, float] = field(default_factory=dict)  #: stage -> milliseconds


class Engine(abc.ABC):
    """A loaded segmentation model. Instances are used from one thread at a time."""

    #: "parser" or "schp"; reported by /health and the logs.
    name: str = "?"

    #: Human-readable reason this engine was chosen (filled by the selector).
    selected_because: str = ""

    @abc.abstractmethod
    def segment(self, rgb: np.ndarray) -> Segmentation:
        """Masks for one upright RGB photo. Raises :class:`EngineError` subclasses."""

    def describe(self) -> dict:
        """Facts for /health and the start-up log (engine, dataset, device, ...)."""
        return {"engine": self.name}
