"""What the parser's benchmarks share: which weights files they compare, at how
many threads, with which config (``one_piece_share.py``, ``train_groups.py``)."""

from __future__ import annotations

import argparse
from pathlib import Path

from segworker.parser import weights


def add_weights_options(parser: argparse.ArgumentParser) -> None:
    """``--weights W ...`` (default: the committed file), ``--threads``, ``--config``."""
    parser.add_argument("--weights", nargs="+", help="parser weights files (default: committed)")
    parser.add_argument("--threads", type=int, default=1, help="torch / OpenCV threads")
    parser.add_argument("--config", help="config file (default: config.yaml)")


def weights_files(args: argparse.Namespace) -> list[Path]:
    """The files of ``--weights``, or the committed one."""
    return [Path(p) for p in args.weights] if args.weights else [weights.BUNDLED]
