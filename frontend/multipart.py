"""A strict multipart/form-data parser (RFC 7578) for bodies already in memory.

Tornado's own parser logs and skips parts it cannot read; the API must instead
answer 400 with a reason, and must bound its work on hostile bodies. Here:

- the number of parts is bounded *before* they are split out (``max_parts``);
- part headers must be UTF-8, one ``Name: value`` per line, with exactly one
  ``Content-Disposition: form-data; name="..."``;
- a body without its closing ``--boundary--`` is rejected as truncated.

Field *values* are returned as bytes; deciding what they mean is the caller's job.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

#: Longest boundary RFC 2046 allows, in characters.
MAX_BOUNDARY_LENGTH = 70

_TOKEN = r"[A-Za-z0-9!#$%&'*+.^_`|~-]+"
_PARAM_RE = re.compile(rf"\s*;\s*({_TOKEN})\s*=\s*(\"(?:[^\"\\]|\\.)*\"|{_TOKEN})\s*")
_QUOTED_PAIR_RE = re.compile(r"\\(.)")


class FormError(ValueError):
    """The body is not well-formed multipart/form-data; the message says why."""


@dataclass(frozen=True)
class Part:
    """One part of a multipart body."""

    name: str
    filename: str | None
    content_type: str | None
    body: bytes


def parse_header_value(value: str) -> tuple[str, dict[str, str]]:
    """``'form-data; name="a"'`` -> ``('form-data', {'name': 'a'})``.

    The first token is lower-cased, parameter names too; quoted values are
    unquoted. Raises :class:`FormError` on anything it cannot read entirely.
    """
    head, sep, rest = value.partition(";")
    params: dict[str, str] = {}
    pos = 0
    rest = sep + rest
    while pos < len(rest) and rest[pos:].strip():
        match = _PARAM_RE.match(rest, pos)
        if match is None:
            raise FormError(f"malformed header parameters: {value[:100]!r}")
        key, raw = match.group(1).lower(), match.group(2)
        if raw.startswith('"'):
            raw = _QUOTED_PAIR_RE.sub(r"\1", raw[1:-1])
        if key in params:
            raise FormError(f"header parameter {key!r} is repeated")
        params[key] = raw
        pos = match.end()
    return head.strip().lower(), params


def boundary_of(content_type: str) -> bytes:
    """The boundary of a ``multipart/form-data`` Content-Type, as bytes.

    Raises :class:`FormError` if the value has no usable boundary.
    """
    _, params = parse_header_value(content_type)
    boundary = params.get("boundary", "")
    if not 1 <= len(boundary) <= MAX_BOUNDARY_LENGTH or not boundary.isascii():
        raise FormError("Content-Type multipart/form-data needs a boundary of 1-70 ASCII characters")
    return boundary.encode("ascii")


def parse_form_data(boundary: bytes, body: bytes, max_parts: int) -> list[Part]:
    """Split ``body`` into its parts; at most ``max_parts`` are accepted.

    Raises :class:`FormError` for a truncated or malformed body, or too many parts.
    """
    delimiter = b"--" + boundary
    end = body.rfind(delimiter + b"--")
    if end < 0:
        raise FormError("the multipart body is incomplete: its closing boundary is missing")
    # maxsplit bounds the work: a body of a million parts is refused after max_parts + 1.
    segments = body[:end].split(delimiter, max_parts + 1)
    if len(segments) - 1 > max_parts:
        raise FormError(f"the multipart body has more than {max_parts} parts")
    preamble, raw_parts = segments[0], segments[1:]
    if preamble and not preamble.endswith(b"\r\n"):
        raise FormError("the multipart body does not start with its boundary")
    if not raw_parts:
        raise FormError("the multipart body has no parts")
    return [_parse_part(raw) for raw in raw_parts]


def _parse_part(raw: bytes) -> Part:
    if not (raw.startswith(b"\r\n") and raw.endswith(b"\r\n")):
        raise FormError("a multipart boundary is not followed or preceded by CRLF")
    head, sep, body = raw[2:-2].partition(b"\r\n\r\n")
    if not sep:
        raise FormError("a multipart part has no blank line after its headers")
    headers = _parse_part_headers(head)
    disposition = headers.get("content-disposition")
    if disposition is None:
        raise FormError("a multipart part has no Content-Disposition header")
    kind, params = parse_header_value(disposition)
    if kind != "form-data" or "name" not in params:
        raise FormError('each part needs Content-Disposition: form-data; name="..."')
    return Part(name=params["name"], filename=params.get("filename"),
                content_type=headers.get("content-type"), body=body)


def _parse_part_headers(head: bytes) -> dict[str, str]:
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        raise FormError("multipart part headers are not valid UTF-8") from None
    headers: dict[str, str] = {}
    for line in text.split("\r\n"):
        name, colon, value = line.partition(":")
        name = name.strip().lower()
        if not colon or not name or "\x00" in line:
            raise FormError(f"malformed multipart part header: {line[:100]!r}")
        if name in headers:
            raise FormError(f"multipart part header {name!r} is repeated")
        headers[name] = value.strip()
    return headers
