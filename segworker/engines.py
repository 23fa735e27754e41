"""Engine selection: ``segmentation.engine`` (SEGMENTATION_ENGINE) = auto | schp | pose.

- ``pose``: the MediaPipe pose engine (:mod:`segworker.pose`), no weights needed.
- ``schp``: the SCHP engine; its weights must be configured and must load.
- ``auto``: SCHP when ``segmentation.schp.weights`` (SCHP_WEIGHTS) is set,
  otherwise pose. Configured weights that do not load are a start-up error,
  never a silent fall-back to pose: an operator who set SCHP_WEIGHTS expects
  SCHP's masks.

The chosen engine's ``selected_because`` says which rule picked it. SCHP (and
with it torch) is imported only when it is chosen.
"""

from __future__ import annotations

import logging
import time

from common.config import Settings
from common.logs import event
from segworker.engine import Engine, EngineLoadError

log = logging.getLogger(__name__)

#: Facts of describe() that engine_selected repeats: how the engine runs, and why.
RUNTIME_FACTS = ("precision", "backend", "precision_because", "backend_because")


def build_engine(settings: Settings) -> Engine:
    """Load the engine the settings select; raises :class:`EngineLoadError`
    (with a message naming the setting and the problem) when it cannot start."""
    choice = settings.segmentation.engine
    weights = settings.segmentation.schp.weights
    if choice == "pose":
        reason = "SEGMENTATION_ENGINE=pose"
    elif choice == "schp":
        reason = "SEGMENTATION_ENGINE=schp"
    elif choice == "auto":
        reason = (f"SEGMENTATION_ENGINE=auto and SCHP weights are configured ({weights})"
                  if weights else "SEGMENTATION_ENGINE=auto and no SCHP weights configured")
        choice = "schp" if weights else "pose"
    else:
        raise EngineLoadError(f"segmentation.engine (SEGMENTATION_ENGINE): unknown engine "
                              f"{choice!r}; use auto, schp or pose")
    started = time.perf_counter()
    engine = _load_schp(settings, reason) if choice == "schp" else _load_pose()
    engine.selected_because = reason
    runtime = {k: v for k, v in engine.describe().items() if k in RUNTIME_FACTS}
    event(log, "engine_selected", engine=engine.name, selected_because=reason,
          load_ms=round((time.perf_counter() - started) * 1000, 1), **runtime)
    return engine


def _load_pose() -> Engine:
    from segworker.pose import PoseEngine  # mediapipe only when pose is chosen
    return PoseEngine()


def _load_schp(settings: Settings, reason: str) -> Engine:
    from segworker.schp.engine import SchpEngine  # torch only when SCHP is chosen
    try:
        return SchpEngine.from_settings(settings)
    except EngineLoadError as exc:
        hint = ("fix the file SCHP_WEIGHTS (segmentation.schp.weights) names, or unset it"
                if settings.segmentation.schp.weights else "configure SCHP_WEIGHTS")
        raise EngineLoadError(f"the SCHP engine was selected because {reason}, but it cannot "
                              f"start: {exc}. To start, {hint}, or set SEGMENTATION_ENGINE=pose "
                              "for the pose engine.") from None
