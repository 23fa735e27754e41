"""Validation of client-supplied identifiers.

``job_id`` and ``user_id`` end up in file names, log lines and HTTP requests to
the asset service, so only a conservative character set is accepted.
"""

from __future__ import annotations

import re

#: Longest accepted job_id / user_id, in characters.
MAX_ID_LENGTH = 128

_ID_RE = re.compile(rf"[A-Za-z0-9][A-Za-z0-9_.:-]{{0,{MAX_ID_LENGTH - 1}}}")

#: Providers this component serves.
PROVIDERS = ("qwen",)


def is_valid_id(value: str) -> bool:
    """True when ``value`` is 1-128 chars of ``A-Z a-z 0-9 _ . : -``, starting
    with a letter or digit, and contains no ``..`` (so it is safe in a path)."""
    return bool(_ID_RE.fullmatch(value)) and ".." not in value
