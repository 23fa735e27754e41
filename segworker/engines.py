"""Engine selection: ``segmentation.engine`` (SEGMENTATION_ENGINE) = auto | parser | schp | pose.

- ``parser``: the garment parser (:mod:`segworker.parser`), trained weights shipped
  with the project; ``segmentation.parser.weights`` (PARSER_WEIGHTS) may name others.
- ``schp``: the SCHP engine; its weights must be configured and must load.
- ``pose``: the MediaPipe pose engine (:mod:`segworker.pose`), hand-written rules,
  no weights file; chosen only when asked for.
- ``auto``: SCHP when ``segmentation.schp.weights`` (SCHP_WEIGHTS) is set,
  otherwise the parser. Configured weights that do not load are a start-up
  error, never a silent fall-back: an operator who set SCHP_WEIGHTS expects
  SCHP's masks, and a damaged parser file is named, not papered over.

The chosen engine's ``selected_because`` says which rule picked it. Each
engine's heavy imports happen only when it is chosen.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from common.config import Settings
from common.logs import event
from segworker.engine import Engine, EngineLoadError

log = logging.getLogger(__name__)

#: Facts of describe() that engine_selected repeats: how the engine runs, and why.
RUNTIME_FACTS = ("precision", "backend", "precision_because", "backend_because")


def build_engine(settings: Settings) -> Engine:
    """Load the engine the settings select; raises :class:`EngineLoadError`
    (with a message naming the setting and the problem) when it cannot start."""
    choice, reason = settings.segmentation.chosen_engine()  # a valid name (common.config)
    started = time.perf_counter()
    engine = LOADERS[choice](settings, reason)
    engine.selected_because = reason
    runtime = {k: v for k, v in engine.describe().items() if k in RUNTIME_FACTS}
    event(log, "engine_selected", engine=engine.name, selected_because=reason,
          load_ms=round((time.perf_counter() - started) * 1000, 1), **runtime)
    return engine


def _load_pose(settings: Settings, reason: str) -> Engine:
    from segworker.pose import PoseEngine  # mediapipe only, no torch
    return PoseEngine()


def _load_parser(settings: Settings, reason: str) -> Engine:
    from segworker.parser.engine import ParserEngine  # torch only when the parser is chosen
    try:
        return ParserEngine.from_settings(settings)
    except EngineLoadError as exc:
        hint = ("fix or unset PARSER_WEIGHTS (segmentation.parser.weights)"
                if settings.segmentation.parser.weights else
                "restore segworker/parser/parser.pt and its .sha256 from git, or retrain it "
                "(docs/parser.md)")
        raise EngineLoadError(f"the parser engine was selected because {reason}, but it cannot "
                              f"start: {exc}. To start, {hint}.") from None


def _load_schp(settings: Settings, reason: str) -> Engine:
    from segworker.schp.engine import SchpEngine  # torch only when SCHP is chosen
    try:
        return SchpEngine.from_settings(settings)
    except EngineLoadError as exc:
        hint = ("fix the file SCHP_WEIGHTS (segmentation.schp.weights) names, or unset it "
                "for the parser engine" if settings.segmentation.schp.weights else
                "configure SCHP_WEIGHTS, or set SEGMENTATION_ENGINE=parser for the parser engine")
        raise EngineLoadError(f"the SCHP engine was selected because {reason}, but it cannot "
                              f"start: {exc}. To start, {hint}.") from None


#: Engine name -> loader(settings, reason the engine was chosen).
LOADERS: dict[str, Callable[[Settings, str], Engine]] = {
    "parser": _load_parser, "schp": _load_schp, "pose": _load_pose}
