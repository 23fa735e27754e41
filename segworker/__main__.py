"""``python -m segworker --index N``: one segmentation worker of the pool.

Start-up order matters: settings, logging, then CPU/GPU placement (before
torch is imported, so its thread pools see the pinned cores), then the engine.

Exit codes: 0 after SIGTERM/SIGINT (drained), 2 for a configuration or CURVE
key problem, 3 when the engine cannot load (supervisord retries, then shows
FATAL).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys

from common.config import Settings
from common.logs import event, wrap_native_stderr
from common.startup import start_process

log = logging.getLogger("segworker")


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m segworker",
                                     description="Run one segmentation worker.")
    parser.add_argument("--index", type=int, default=0,
                        help="worker number (supervisord's process_num); picks cores and GPU")
    args = parser.parse_args(argv)
    if args.index < 0:
        parser.error("--index must not be negative")
    return args


def main(argv: list[str] | None = None) -> int:
    """Load settings, pin the process, load the engine and serve; returns the exit code."""
    args = _parse(argv)
    settings = start_process("segworker")
    if settings is None:
        return 2
    wrap_native_stderr()  # before MediaPipe/TFLite/torch print their notices to stderr
    from segworker import affinity  # no torch here
    try:
        placement = affinity.place(settings.workers, args.index, os.environ)
    except (OSError, ValueError) as exc:
        event(log, "worker_start_failed", logging.CRITICAL, error=f"cannot place worker: {exc}")
        return 2
    event(log, "worker_placed", index=args.index, cores=placement.cores,
          threads=placement.threads, gpu=placement.gpu,
          cuda_visible_devices=os.environ.get("CUDA_VISIBLE_DEVICES"))
    return _serve(settings, args.index)


def _serve(settings: Settings, index: int) -> int:
    import torch  # only now: after the affinity and thread variables are set

    torch.set_num_threads(settings.workers.threads)
    from common.curve import CurveError
    from segworker.engine import EngineLoadError
    from segworker.engines import build_engine
    from segworker.pipeline import process_photo
    from segworker.worker import Worker

    try:
        engine = build_engine(settings)
    except EngineLoadError as exc:
        event(log, "engine_load_failed", logging.CRITICAL, index=index, error=str(exc))
        return 3
    event(log, "engine_loaded", index=index, engine=engine.describe(),
          selected_because=engine.selected_because)
    try:
        worker = Worker(settings, engine, process_photo, index=index)
    except CurveError as exc:
        event(log, "worker_start_failed", logging.CRITICAL, error=str(exc))
        return 2
    signal.signal(signal.SIGTERM, worker.request_stop)
    signal.signal(signal.SIGINT, worker.request_stop)
    code = worker.run()
    if worker.abandoned:
        # The inference thread is still inside the engine; do not wait for it.
        logging.shutdown()
        os._exit(code)
    return code


if __name__ == "__main__":
    sys.exit(main())
