"""Masks for one photo from the command line, with the same settings as the service.

    python -m segworker.cli PHOTO [PHOTO ...] --out DIR [--seg-map]
                            [--engine auto|parser|schp|pose] [--config PATH]

Writes ``upper_body_mask.png``, ``lower_body_mask.png`` and ``overlay.png``
(upper in green, lower in magenta, over the photo) to DIR, plus ``seg_map.png``
with ``--seg-map``. With several photos, each one's files go to ``DIR/<name>/``
and the engine is loaded once. Prints the engine, why it was chosen, its precision
and backend (SCHP) and why, and milliseconds per stage.
Configuration comes from ``common.config.load_settings`` (config.yaml and the
environment: SCHP_WEIGHTS, SEGMENTATION_ENGINE, ...); ``--engine`` overrides
``segmentation.engine``.

Exit status: 0 done, 2 unreadable or unaccepted photo (or bad arguments, such as
an --out folder that cannot be written),
3 no person in the photo, 4 the engine cannot start, 5 bad configuration.
Errors are one line on stderr. With several photos every photo is tried and
the status is the first failure's.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

from common.config import ConfigError, Settings, load_settings
from common.logs import setup_logging
from common.photo import PhotoError, decode_rgb
from common.wire import LOWER, SEG_MAP, UPPER
from segworker.engine import Engine, EngineLoadError, NoPersonError

#: Exit statuses (see the module docstring).
EXIT_BAD_PHOTO, EXIT_NO_PERSON, EXIT_ENGINE, EXIT_CONFIG = 2, 3, 4, 5

#: Name of the preview image written next to the masks.
OVERLAY_NAME = "overlay.png"

#: Preview colours (RGB) and how strongly they cover the photo (0-1).
UPPER_COLOUR, LOWER_COLOUR, OVERLAY_ALPHA = (0, 220, 90), (255, 0, 200), 0.55


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        settings = _settings(args)
    except ConfigError as exc:
        return _fail(EXIT_CONFIG, f"configuration error: {exc}")
    setup_logging("segworker-cli", settings.logging.level)
    loader = _EngineLoader(settings)
    out = Path(args.out)
    status = 0
    for photo in args.photo:
        folder = out / Path(photo).stem if len(args.photo) > 1 else out
        if len(args.photo) > 1:
            print(f"photo: {photo}")
        code = _run(settings, loader, Path(photo), folder, args.seg_map)
        if code == EXIT_ENGINE:
            return code
        status = status or code
    return status


class _EngineLoader:
    """Builds the engine once, on the first photo that decodes (a bad photo is
    reported before the engine's start-up output), and remembers how long it took."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.engine: Engine | None = None
        self.load_ms = 0.0

    def get(self) -> Engine:
        """The engine; raises EngineLoadError when it cannot start."""
        if self.engine is None:
            from segworker.engines import build_engine
            started = time.perf_counter()
            self.engine = build_engine(self.settings)
            self.load_ms = _ms(started)
            print(f"engine: {self.engine.name} ({self.engine.selected_because})")
            _print_runtime(self.engine.describe())
        return self.engine

    def take_load_ms(self) -> float:
        """The load time, once (0 for the photos after the first)."""
        load_ms, self.load_ms = self.load_ms, 0.0
        return load_ms


def _run(settings: Settings, loader: _EngineLoader, photo: Path, out: Path, seg_map: bool) -> int:
    from segworker.pipeline import encode_masks, segment_photo

    try:
        data = photo.read_bytes()
    except OSError as exc:
        return _fail(EXIT_BAD_PHOTO, f"cannot read {photo}: {exc.strerror}")
    started = time.perf_counter()
    try:
        rgb = decode_rgb(data, settings.server.max_image_pixels)
    except PhotoError as exc:
        return _fail(EXIT_BAD_PHOTO, f"bad photo: {exc}")
    decode_ms = _ms(started)
    try:
        engine = loader.get()
    except EngineLoadError as exc:
        return _fail(EXIT_ENGINE, f"engine cannot start: {exc}")
    timings = {"decode": decode_ms, "engine_load": loader.take_load_ms()}
    try:
        masks = segment_photo(engine, rgb, settings.segmentation.refine)
    except NoPersonError as exc:
        return _fail(EXIT_NO_PERSON, f"no person: {exc}")
    files = encode_masks(masks, seg_map)
    timings.update(masks.timings_ms)
    try:
        out.mkdir(parents=True, exist_ok=True)
        for name, png in files.items():
            (out / f"{name}.png").write_bytes(png)
        Image.fromarray(overlay(rgb, masks.upper, masks.lower)).save(out / OVERLAY_NAME)
    except OSError as exc:
        return _fail(EXIT_BAD_PHOTO, f"cannot write to {out}: {exc.strerror or exc}")
    _report(out, files, seg_map, timings)
    return 0


def _print_runtime(facts: dict) -> None:
    """How the engine runs (SCHP: precision and backend) and why, when it says."""
    for key in ("precision", "backend"):
        if facts.get(key):
            print(f"{key}: {facts[key]} ({facts.get(key + '_because', 'engine default')})")


def overlay(rgb: np.ndarray, upper: np.ndarray, lower: np.ndarray) -> np.ndarray:
    """A preview: the photo with upper tinted green and lower magenta (overlap: mixed)."""
    tint = np.zeros(rgb.shape, np.float32)
    weight = np.zeros(rgb.shape[:2], np.float32)
    for mask, colour in ((upper, UPPER_COLOUR), (lower, LOWER_COLOUR)):
        tint[mask] += colour
        weight[mask] += 1
    covered = weight > 0
    tint[covered] /= weight[covered][:, None]
    alpha = (OVERLAY_ALPHA * covered)[..., None]
    return (rgb * (1 - alpha) + tint * alpha).round().astype(np.uint8)


def _report(out: Path, files: dict[str, bytes], seg_map: bool, timings: dict[str, float]) -> None:
    written = [f"{name}.png" for name in (UPPER, LOWER, SEG_MAP) if name in files]
    print(f"wrote: {', '.join(written + [OVERLAY_NAME])} in {out}")
    if seg_map and SEG_MAP not in files:
        print("seg_map: not available (the pose engine has no labels; use the parser or SCHP)")
    stages = "  ".join(f"{stage}={ms:.1f}" for stage, ms in timings.items())
    print(f"timings_ms: {stages}  total={sum(timings.values()):.1f}")


def _settings(args: argparse.Namespace) -> Settings:
    settings = load_settings(args.config)
    if args.engine:
        seg = dataclasses.replace(settings.segmentation, engine=args.engine)
        settings = dataclasses.replace(settings, segmentation=seg)
    return settings


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m segworker.cli",
                                     description="Write upper/lower body masks for one photo.")
    parser.add_argument("photo", nargs="+", help="JPEG or PNG photo(s) of a person")
    parser.add_argument("--out", required=True, help="folder for the masks and the preview")
    parser.add_argument("--seg-map", action="store_true",
                        help="also write seg_map.png (engines with labels only)")
    parser.add_argument("--engine", choices=("auto", "parser", "schp", "pose"),
                        help="override segmentation.engine (SEGMENTATION_ENGINE)")
    parser.add_argument("--config", help="config file (default: $SCHP_CONFIG_PATH or config.yaml)")
    return parser


def _fail(code: int, message: str) -> int:
    print(f"segworker.cli: {message}", file=sys.stderr)
    return code


def _ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000


if __name__ == "__main__":
    sys.exit(main())
