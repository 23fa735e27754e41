"""``python -m common.settings_check [--print DOTTED.NAME]``

Loads the configuration exactly as the services do and exits 1 with a one-line
message naming the bad setting, or 0. ``--print`` writes one setting's value
(start.sh uses it to give supervisord the worker count).
"""

from __future__ import annotations

import argparse
import sys

from common.config import ConfigError, load_settings

#: Settings that --print refuses to write: they are secrets.
SECRET_SETTINGS = ("upload.secret", "server.api_key")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m common.settings_check")
    parser.add_argument("--print", dest="dotted", help="print one setting, e.g. workers.count")
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 1
    if args.dotted in SECRET_SETTINGS:
        print(f"{args.dotted} is a secret; it is not printed", file=sys.stderr)
        return 1
    if args.dotted:
        value = settings
        for part in args.dotted.split("."):
            value = getattr(value, part, None)
        print(value)
    return 0


if __name__ == "__main__":
    sys.exit(main())
