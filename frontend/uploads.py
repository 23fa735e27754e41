"""The rules of the POST /process form and of the photo it carries.

Status codes are chosen by *what* is wrong, consistently:

- 415: the request body or the photo is in a format this API does not take
  (Content-Type other than multipart/form-data; a photo that is not JPEG/PNG);
- 400: the form is wrong — malformed multipart, too many parts, a missing,
  repeated, empty, non-UTF-8 or NUL-containing field, an invalid id, an
  unknown provider;
- 413: too large (body bytes, or photo pixels);
- 422: a JPEG/PNG that cannot be decoded (truncated, corrupt, too small).
"""

from __future__ import annotations

from dataclasses import dataclass

from common.ids import MAX_ID_LENGTH, PROVIDERS, is_valid_id
from common.photo import PhotoError, check_decodable
from frontend.errors import ApiError
from frontend.multipart import FormError, Part, boundary_of, parse_form_data

#: Most multipart parts accepted in one POST /process body (4 are used).
MAX_PARTS = 10

#: The form's file field and its text fields.
IMAGE_FIELD = "user_image"
TEXT_FIELDS = ("user_id", "job_id", "provider")

#: Provider used when the form has no ``provider`` field.
DEFAULT_PROVIDER = "qwen"

#: The one request Content-Type accepted by POST /process.
FORM_MEDIA_TYPE = "multipart/form-data"

#: How a valid job_id / user_id looks, for error messages (see common.ids.is_valid_id).
ID_RULE = (f"1-{MAX_ID_LENGTH} characters of A-Z a-z 0-9 _ . : -, starting with a letter "
            "or digit, without '..'")


@dataclass(frozen=True)
class ProcessForm:
    """A POST /process form that passed every field rule (not yet the photo checks)."""

    job_id: str
    user_id: str
    provider: str
    image: bytes


def form_boundary(content_type: str | None) -> bytes:
    """The multipart boundary of a request, or :class:`ApiError` (415 / 400)."""
    # The media type alone decides 415; unreadable parameters of a multipart/form-data
    # type are a bad form (400, from boundary_of below).
    media_type = (content_type or "").partition(";")[0].strip().lower()
    if media_type != FORM_MEDIA_TYPE:
        shown = (content_type or "none")[:100]
        raise ApiError(415, f"Content-Type must be {FORM_MEDIA_TYPE} (got {shown!r})",
                       kind="wrong_content_type")
    try:
        return boundary_of(content_type or "")
    except FormError as exc:
        raise ApiError(400, str(exc), kind="bad_form") from None


def read_process_form(boundary: bytes, body: bytes) -> ProcessForm:
    """Parse and check the form; raises :class:`ApiError` 400 naming the first problem."""
    try:
        parts = parse_form_data(boundary, body, MAX_PARTS)
    except FormError as exc:
        raise ApiError(400, str(exc), kind="bad_form") from None
    fields = _known_fields(parts)
    for name in (IMAGE_FIELD, "user_id", "job_id"):
        if name not in fields:
            raise ApiError(400, f"field {name} is missing", kind="missing_field")
    job_id = _text_field(fields, "job_id")
    user_id = _text_field(fields, "user_id")
    for name, value in (("job_id", job_id), ("user_id", user_id)):
        if not is_valid_id(value):
            raise ApiError(400, f"{name} is invalid: it must be {ID_RULE}", kind="invalid_id")
    provider = _text_field(fields, "provider") if "provider" in fields else DEFAULT_PROVIDER
    if provider not in PROVIDERS:
        raise ApiError(400, f"provider {provider[:64]!r} is not served here "
                            f"(accepted: {', '.join(PROVIDERS)})", kind="unknown_provider")
    image = fields[IMAGE_FIELD].body
    if not image:
        raise ApiError(400, f"field {IMAGE_FIELD} is empty", kind="empty_image")
    return ProcessForm(job_id=job_id, user_id=user_id, provider=provider, image=image)


def check_photo(data: bytes, max_pixels: int) -> str:
    """Decode the photo as far as needed to know the worker can (catches
    truncation; :func:`common.photo.check_decodable`); returns its format,
    "JPEG" or "PNG".

    Raises :class:`common.photo.PhotoError` (with its HTTP status) otherwise.
    CPU-heavy: call it from a thread pool, not the IOLoop.
    """
    try:
        fmt = check_decodable(data, max_pixels)
    except (PhotoError, MemoryError):
        raise
    except Exception as exc:  # hostile bytes: see below  # noqa: BLE001
        # Hostile bytes may reach decoder paths that raise other types; they are still
        # a broken upload (422), never a server error.
        raise PhotoError(f"user_image could not be decoded ({type(exc).__name__})", 422) from None
    return fmt


def warm_up() -> None:
    """Decode a tiny JPEG and PNG once, so that Pillow's plugins and the decoding paths
    are loaded at start-up rather than inside the first requests (under a burst after a
    restart, that first-use cost would delay every one of them)."""
    from io import BytesIO

    from PIL import Image
    for fmt in ("JPEG", "PNG"):
        buf = BytesIO()
        Image.new("RGB", (32, 32), (90, 120, 150)).save(buf, fmt)
        check_photo(buf.getvalue(), 32 * 32)


def photo_error(exc: PhotoError) -> ApiError:
    """The API's answer to a photo that was refused."""
    reason = {413: "too_many_pixels", 415: "unsupported_format"}.get(exc.status, "undecodable_image")
    return ApiError(exc.status, str(exc), kind=reason)


def _known_fields(parts: list[Part]) -> dict[str, Part]:
    """The form's known fields by name; unknown fields are ignored, repeats refused."""
    fields: dict[str, Part] = {}
    for part in parts:
        if part.name not in (IMAGE_FIELD, *TEXT_FIELDS):
            continue
        if part.name in fields:
            raise ApiError(400, f"field {part.name} is given more than once",
                           kind="duplicate_field")
        fields[part.name] = part
    return fields


def _text_field(fields: dict[str, Part], name: str) -> str:
    raw = fields[name].body
    try:
        value = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ApiError(400, f"field {name} is not valid UTF-8", kind="bad_encoding") from None
    if "\x00" in value:
        raise ApiError(400, f"field {name} contains a NUL byte", kind="bad_encoding")
    return value
