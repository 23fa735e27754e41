"""The parser engine: a network trained on labelled photos, shipped with the project.

Per photo: the MediaPipe selfie model's person probability and (for a
network that takes pose planes) BlazePose's landmarks
(:mod:`segworker.parser.person`), a crop around the main person
(:mod:`segworker.parser.crop`), one forward pass of the parser network, the
logits warped back into the photo, and the configured label sets
(``segmentation.parser.labels``) make the two masks. Torch thread counts are
the calling process's business; this module never sets them.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np

from common.config import LabelSet, Settings
from common.logs import event
from segworker.engine import Engine, EngineLoadError, NoPersonError, Segmentation
from segworker.masks import label_masks, voc_palette
from segworker.parser import crop, weights
from segworker.parser.classes import CLASS_NAMES
from segworker.parser.infer import forward, network_input, resolve_one_piece, uses_pose
from segworker.parser.network import ParserNet, channels_last, fuse_batch_norms
from segworker.parser.person import PersonFinder
from segworker.precision import Choice, choose_precision, cpu_flags

log = logging.getLogger(__name__)

#: The precision of an engine built without settings (tests, tools).
FP32 = Choice("fp32", "PARSER_PRECISION=fp32")


class ParserEngine(Engine):
    """A loaded parser network, the person model and the label sets."""

    name = "parser"

    def __init__(self, net: ParserNet, labels: LabelSet, finder: PersonFinder | None = None,
                 weights_path: Path | None = None, trained: dict | None = None,
                 precision: Choice = FP32) -> None:
        for part, ids in (("upper", labels.upper), ("lower", labels.lower)):
            bad = [i for i in ids if not 0 <= i < len(CLASS_NAMES)]
            if bad:
                raise EngineLoadError(f"segmentation.parser.labels.{part}: {bad} are not parser "
                                      f"classes (0-{len(CLASS_NAMES) - 1}, see docs/parser.md)")
        self.net = channels_last(fuse_batch_norms(net.eval()))
        self.pose = uses_pose(self.net)
        self.labels = labels
        self.weights_path = weights_path
        self.trained = trained or {}
        self.precision = precision
        self._finder = finder or PersonFinder()
        self._palette = voc_palette()

    @classmethod
    def from_settings(cls, settings: Settings) -> ParserEngine:
        """Load ``segmentation.parser.weights`` (PARSER_WEIGHTS; the shipped
        file when unset). Raises :class:`~segworker.engine.EngineLoadError`
        naming the file and the problem."""
        parser = settings.segmentation.parser
        path = settings.resolve(parser.weights) or weights.BUNDLED
        started = time.perf_counter()
        net, trained = weights.load(path)
        precision = choose_precision(parser.precision, "cpu", cpu_flags=cpu_flags(),
                                     setting="PARSER_PRECISION")
        engine = cls(net, parser.labels, weights_path=path, trained=trained, precision=precision)
        event(log, "parser_engine_loaded", load_ms=round((time.perf_counter() - started) * 1000, 1),
              **engine.describe())
        return engine

    def segment(self, rgb: np.ndarray) -> Segmentation:
        """Masks for one upright ``H x W x 3`` uint8 RGB photo.

        Raises :class:`NoPersonError` when the person models see nobody
        (:meth:`PersonFinder.locate`), or the network labels every pixel
        as background.
        """
        if not (isinstance(rgb, np.ndarray) and rgb.dtype == np.uint8 and rgb.ndim == 3
                and rgb.shape[2] == 3):
            raise ValueError("segment() needs an H x W x 3 uint8 RGB array")
        height, width = rgb.shape[:2]
        t0 = time.perf_counter()
        found = self._finder.locate(rgb, with_pose=self.pose)
        if found is None:
            raise NoPersonError("no person found in the photo")
        t1 = time.perf_counter()
        matrix = crop.box_matrix(found.box)
        inputs = network_input(rgb, found.prob, matrix, found.landmarks, pose=self.pose)
        t2 = time.perf_counter()
        logits = resolve_one_piece(forward(self.net, inputs,
                                           bf16=self.precision.value == "bf16"))
        t3 = time.perf_counter()
        label_map = crop.labels_in_photo(logits, matrix, height, width)
        t4 = time.perf_counter()
        if not label_map.any():
            raise NoPersonError("no person found: the parser labelled every pixel as background")
        upper, lower = label_masks(label_map, self.labels)
        timings = {"person": _ms(t0, t1), "preprocess": _ms(t1, t2), "forward": _ms(t2, t3),
                   "postprocess": _ms(t3, t4)}
        return Segmentation(upper=upper, lower=lower, seg_map=label_map,
                            palette=list(self._palette), timings_ms=timings)

    def describe(self) -> dict:
        """Engine facts for /health and the start-up log."""
        facts = {"engine": self.name, "weights": str(self.weights_path) if self.weights_path else None,
                 "classes": list(CLASS_NAMES), "input": [crop.INPUT_H, crop.INPUT_W],
                 "trained_on": self.trained.get("source"),
                 "pose_planes": self.pose,
                 "precision": self.precision.value, "backend": "eager",
                 "precision_because": self.precision.because,
                 "backend_because": "the parser runs on eager PyTorch",
                 "labels": {"upper": list(self.labels.upper), "lower": list(self.labels.lower)}}
        if self.selected_because:
            facts["selected_because"] = self.selected_because
        return facts

    def close(self) -> None:
        """Free the MediaPipe graphs."""
        self._finder.close()


def _ms(start: float, end: float) -> float:
    return round((end - start) * 1000.0, 1)
