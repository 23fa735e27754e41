"""Request signing: a timestamped HMAC-SHA256 of the exact request body.

Header format (one header, comma-separated ``key=value`` pairs)::

    X-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, f"{t}.".encode() + body)>

The timestamp lets a receiver refuse replays older than its tolerance; the
``v1`` tag lets the scheme change later without breaking receivers (a header
may carry several ``v1`` values, e.g. during a secret rotation; one matching
value is enough).
"""

from __future__ import annotations

import hashlib
import hmac
import time

#: Name of the signature header.
SIGNATURE_HEADER = "X-Signature"
#: Default age (and clock skew) a receiver accepts, in seconds.
DEFAULT_TOLERANCE_S = 300.0


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """Hex HMAC-SHA256 of ``f"{timestamp}.".encode() + body`` keyed by ``secret``."""
    message = f"{timestamp}.".encode("ascii") + body
    return hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest()


def sign(secret: str, body: bytes, timestamp: int | None = None) -> str:
    """The ``X-Signature`` header value for ``body`` (timestamp: now by default)."""
    t = int(time.time()) if timestamp is None else int(timestamp)
    return f"t={t},v1={signature(secret, t, body)}"


def verify_signature(secret: str, header: str | None, body: bytes,
                     tolerance_s: float = DEFAULT_TOLERANCE_S, now: float | None = None) -> bool:
    """True when ``header`` is a valid signature of ``body`` made with ``secret``
    no more than ``tolerance_s`` seconds from ``now`` (either direction).

    Never raises on malformed input: anything unparsable is simply invalid.
    The comparison is constant-time.
    """
    if not header or not secret:
        return False
    timestamp, candidates = None, []
    for part in header.split(","):
        key, sep, value = part.strip().partition("=")
        if not sep:
            return False
        if key == "t":
            timestamp = value
        elif key == "v1":
            candidates.append(value)
    if timestamp is None or not (timestamp.isascii() and timestamp.isdigit()) or not candidates:
        return False
    now = time.time() if now is None else now
    if abs(now - int(timestamp)) > tolerance_s:
        return False
    expected = signature(secret, int(timestamp), body).encode("ascii")
    # bytes, not str: compare_digest refuses non-ASCII str, and input is untrusted
    return any(hmac.compare_digest(expected, c.lower().encode("utf-8", "replace"))
               for c in candidates)
