"""A stand-in segmentation worker: the real worker loop with a model that does no work.

``python -m devtools.standin_worker [--index N] [--delay S]`` runs
:class:`segworker.worker.Worker` exactly as ``python -m segworker`` does (the same
settings, broker protocol, heartbeats, CURVE keys, inline images, SIGTERM drain),
but its "engine" waits ``--delay`` seconds and answers fixed masks (upper half /
lower half of the photo, 0/255 PNGs at the photo's size). It loads no model and
pins no core, so dozens start in seconds.

Used where the broker and the rest of the service are what is measured or tested:
``bench/capacity.py`` (many instant workers) and the remote-worker test (a worker
that surely holds its job while its network link is cut). Not for production.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading

import numpy as np

from common.config import RefineSettings
from common.logs import event
from common.startup import start_process
from common.wire import LOWER, UPPER
from segworker.engine import Engine, Segmentation
from segworker.masks import encode_mask_png

log = logging.getLogger("segworker")


class StandInEngine(Engine):
    """Upper half / lower half of every photo, after ``delay_s`` seconds."""

    name = "standin"
    selected_because = "devtools.standin_worker"

    def __init__(self, delay_s: float) -> None:
        self.delay_s = delay_s
        self._stop = threading.Event()   #: set on SIGTERM: a long delay ends early
        self._png_cache: dict[tuple[int, int], dict[str, bytes]] = {}

    def segment(self, rgb: np.ndarray) -> Segmentation:
        height, width = rgb.shape[:2]
        upper = np.zeros((height, width), bool)
        upper[: height // 2] = True
        return Segmentation(upper=upper, lower=~upper)

    def describe(self) -> dict:
        return {"engine": self.name, "device": "cpu", "delay_s": self.delay_s}

    def process(self, engine: Engine, rgb: np.ndarray, refine: RefineSettings,
                write_seg_map: bool) -> dict[str, bytes]:
        """The worker's ``process`` function: wait, then the cached PNGs for this size
        (no refinement: the stand-in answers "at once" after its delay)."""
        if self.delay_s > 0:
            self._stop.wait(self.delay_s)
        key = rgb.shape[:2]
        if key not in self._png_cache:
            seg = self.segment(rgb)
            self._png_cache[key] = {UPPER: encode_mask_png(seg.upper),
                                    LOWER: encode_mask_png(seg.lower)}
        return dict(self._png_cache[key])

    def interrupt(self) -> None:
        self._stop.set()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.standin_worker",
                                     description="Run one stand-in worker (no model).")
    parser.add_argument("--index", type=int, default=0, help="worker number (its name's suffix)")
    parser.add_argument("--delay", type=float, default=0.0,
                        help="seconds each job takes (default 0: at once)")
    args = parser.parse_args(argv)
    settings = start_process("segworker")
    if settings is None:
        return 2
    from common.curve import CurveError
    from segworker.worker import Worker

    engine = StandInEngine(args.delay)
    try:
        worker = Worker(settings, engine, engine.process, index=args.index)
    except CurveError as exc:
        event(log, "worker_start_failed", logging.CRITICAL, error=str(exc))
        return 2

    def stop(*_: object) -> None:
        engine.interrupt()
        worker.request_stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    event(log, "engine_loaded", index=args.index, engine=engine.describe(),
          selected_because=engine.selected_because)
    return worker.run()


if __name__ == "__main__":
    sys.exit(main())
