"""``python -m devtools.log_reason LOG_FILE``: one line saying why a process stopped.

``demo.sh`` prints it when a program went FATAL or the service did not start: the
last ``critical``/``error`` event of a JSON log (its event name and its
``error``/``detail``), else the log's last non-empty line. Exits 1 when the file
has nothing to say.
"""

from __future__ import annotations

import json
import sys
from collections import deque
from pathlib import Path

#: Lines read from the end of the log.
TAIL_LINES = 400

#: Fields that carry the explanation of an event, in order of preference.
REASON_FIELDS = ("error", "detail", "exc")


def reason(lines: list[str]) -> str | None:
    """The explanation in ``lines`` (see the module docstring), or None."""
    last_text = None
    for line in reversed(lines):
        line = line.strip()
        if not line:
            continue
        last_text = last_text or line
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and entry.get("level") in ("critical", "error"):
            why = next((str(entry[f]) for f in REASON_FIELDS if entry.get(f)), "")
            why = why.strip().splitlines()[-1] if why else ""
            return f"{entry.get('event')}: {why}" if why else str(entry.get("event"))
    return last_text


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m devtools.log_reason LOG_FILE", file=sys.stderr)
        return 2
    try:
        with open(Path(args[0]), encoding="utf-8", errors="replace") as f:
            lines = list(deque(f, TAIL_LINES))
    except OSError as exc:
        print(f"(cannot read {args[0]}: {exc.strerror})")
        return 1
    found = reason(lines)
    print(found or f"(nothing in {args[0]})")
    return 0 if found else 1


if __name__ == "__main__":
    sys.exit(main())
