"""``python -m broker``: run the broker; ``python -m broker keygen DIR NAME``: make CURVE keys.

Exit codes: 0 after SIGTERM/SIGINT, 1 when the journal cannot be opened or a
socket cannot be bound, 2 for a configuration error (bad setting, bad key file).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from common import curve
from common.startup import start_process


def _keygen(directory: str, name: str) -> int:
    try:
        public, secret = curve.generate(Path(directory), name)
    except (curve.CurveError, OSError) as exc:
        print(f"keygen: {exc}", file=sys.stderr)
        return 2
    print(f"public key: {public}  (copy to the broker's authorized keys directory, or to "
          f"workers as their server key)\nsecret key: {secret}  (keep on this host, mode 0600)")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run the broker (or the keygen sub-command); returns the exit code."""
    parser = argparse.ArgumentParser(
        prog="python -m broker", description="Run the broker, or create CURVE keys (keygen).")
    sub = parser.add_subparsers(dest="command")
    keygen = sub.add_parser("keygen", help="create a CURVE key pair NAME.key / NAME.key_secret")
    keygen.add_argument("directory")
    keygen.add_argument("name")
    args = parser.parse_args(argv)
    if args.command == "keygen":
        return _keygen(args.directory, args.name)
    settings = start_process("broker")
    if settings is None:
        return 2
    from broker.server import serve  # after logging, so start-up problems are JSON lines
    return serve(settings)


if __name__ == "__main__":
    sys.exit(main())
