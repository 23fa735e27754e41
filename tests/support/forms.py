"""multipart/form-data bodies built byte by byte, including broken ones (POST /process)."""

from __future__ import annotations

BOUNDARY = "testboundary7MA4YWxkTrZu0gW"


def part(name: str | bytes, body: bytes | str, filename: str | None = None,
         content_type: str | None = None, head: bytes | None = None) -> bytes:
    """One encoded part (without its delimiter); ``head`` replaces the generated headers."""
    if head is None:
        name_bytes = name if isinstance(name, bytes) else name.encode()
        head = b'Content-Disposition: form-data; name="' + name_bytes + b'"'
        if filename is not None:
            head += f'; filename="{filename}"'.encode()
        if content_type is not None:
            head += f"\r\nContent-Type: {content_type}".encode()
    data = body.encode() if isinstance(body, str) else body
    return head + b"\r\n\r\n" + data


def photo_part(image: bytes, filename: str = "photo.jpg") -> bytes:
    """The ``user_image`` part."""
    return part("user_image", image, filename=filename, content_type="image/jpeg")


def body(*parts: bytes, boundary: str = BOUNDARY, close: bool = True) -> bytes:
    """A whole body of ``parts``; ``close=False`` leaves off the closing boundary."""
    delim = b"--" + boundary.encode()
    out = b"".join(delim + b"\r\n" + p + b"\r\n" for p in parts)
    return out + (delim + b"--\r\n" if close else b"")


def content_type(boundary: str = BOUNDARY) -> str:
    return f"multipart/form-data; boundary={boundary}"


def process_parts(image: bytes, job_id: str | bytes = "job-1", user_id: str | bytes = "user-1",
                  provider: str | bytes | None = None) -> list[bytes]:
    """The parts of a normal POST /process form."""
    parts = [photo_part(image), part("user_id", user_id), part("job_id", job_id)]
    if provider is not None:
        parts.append(part("provider", provider))
    return parts
