"""``python -m common.settings_check [--settings-only] [--print DOTTED.NAME]``

Loads the configuration exactly as the services do, then checks what every
process will need before anything starts (:mod:`common.preflight`: the upload
URL and secret, the SCHP weights file, free ports, writable state folders).
Exits 1 with one line on stderr naming the bad setting and the fix, or 0.

``--settings-only`` skips the start-up checks (for a host that runs only some
of the processes, e.g. a remote worker). ``--print`` writes one setting's value
and implies ``--settings-only`` (start.sh uses it to give supervisord the worker
count, after a full check).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from common.config import ConfigError, load_settings
from common.logs import redact, register_secret
from common.preflight import check_all

#: Settings that --print refuses to write: they are secrets.
SECRET_SETTINGS = ("upload.secret", "server.api_key")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m common.settings_check")
    parser.add_argument("--print", dest="dotted", help="print one setting, e.g. workers.count")
    parser.add_argument("--settings-only", action="store_true",
                        help="only load and validate the settings (no start-up checks)")
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
        register_secret(settings.upload.secret)
        register_secret(settings.server.api_key)
        if not (args.settings_only or args.dotted):
            check_all(settings)
    except ConfigError as exc:
        print(f"configuration error: {redact(str(exc))}", file=sys.stderr)
        return 1
    if args.dotted in SECRET_SETTINGS:
        print(f"{args.dotted} is a secret; it is not printed", file=sys.stderr)
        return 1
    if args.dotted:
        value: Any = settings
        for part in args.dotted.split("."):
            value = getattr(value, part, None)
        print(value)
    return 0


if __name__ == "__main__":
    sys.exit(main())
