"""Hostile requests and odd photos for the bad-input faults, built byte by byte.

Everything is made in memory (nothing downloaded). :func:`bad_requests` gives
each bad POST /process as ``(body, content_type, status, error_start)``;
:func:`odd_photos` gives the photos in unusual pixel layouts that must WORK.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

import numpy as np
from PIL import Image

from tests.support.forms import body, content_type, part, photo_part, process_parts
from tests.support.images import encode, png_bomb

#: The Content-Type of the raw bodies.
FORM = content_type()
#: EXIF tag of the orientation.
ORIENTATION = 0x0112


class BadRequest(NamedTuple):
    body: bytes
    content_type: str
    status: int
    error_start: str   #: how the JSON ``error`` message must begin


def form(image: bytes, job_id: bytes | str = "bad-job", user_id: bytes | str = "bad-user",
         provider: bytes | str | None = None, extra: tuple[bytes, ...] = ()) -> bytes:
    """A POST /process body; any field may be hostile."""
    return body(*process_parts(image, job_id, user_id, provider), *extra)


def fake_heic() -> bytes:
    """The start of an HEIC file (ftyp box, brand heic) followed by junk."""
    return struct.pack(">I", 24) + b"ftypheic" + b"\0\0\0\0" + b"mif1heic" + b"\x55" * 2000


def _noise(width: int = 64, height: int = 48) -> Image.Image:
    rng = np.random.default_rng(7)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def bad_requests(photo: bytes, upload_limit: int) -> dict[str, BadRequest]:
    """Every bad POST /process tried against the real service, by name.

    ``photo`` is a valid JPEG (so only the named defect is wrong) and
    ``upload_limit`` the service's body limit in bytes.
    """
    cases = {**_bad_photos(photo, upload_limit), **_bad_fields(photo), **_bad_forms(photo)}
    out = {name: BadRequest(b, FORM, status, start) for name, (b, status, start) in cases.items()}
    out.update(_bad_content_types(form(photo)))
    return out


def _bad_photos(photo: bytes, upload_limit: int) -> dict[str, tuple[bytes, int, str]]:
    noise = _noise()
    truncated = encode(_noise(256, 192), "JPEG", quality=90)
    return {
        "not_an_image": (form(b"just some text, not a photo"), 415, "user_image is not an image"),
        "zero_bytes": (form(b""), 400, "field user_image is empty"),
        "truncated_jpeg": (form(truncated[: len(truncated) // 2]), 422,
                           "user_image could not be decoded"),
        "png_bomb_50000x50000": (form(png_bomb()), 413, "user_image is 50000x50000 pixels"),
        "over_size_limit": (form(photo + b"\0" * upload_limit), 413,
                            "the upload is larger than the limit"),
        "gif": (form(encode(noise, "GIF")), 415, "user_image format GIF is not accepted"),
        "tiff": (form(encode(noise, "TIFF")), 415, "user_image format TIFF is not accepted"),
        "webp": (form(encode(noise, "WEBP")), 415, "user_image format WEBP is not accepted"),
        "bmp": (form(encode(noise, "BMP")), 415, "user_image format BMP is not accepted"),
        "fake_heic": (form(fake_heic()), 415, "user_image is not an image"),
        "too_small_8x8": (form(encode(noise.resize((8, 8)), "PNG")), 422,
                          "user_image is 8x8 pixels"),
    }


def _bad_fields(photo: bytes) -> dict[str, tuple[bytes, int, str]]:
    id_rule = "job_id is invalid: it must be"
    return {
        "job_id_path_traversal": (form(photo, job_id="../../etc/passwd"), 400, id_rule),
        "job_id_empty": (form(photo, job_id=""), 400, id_rule),
        "job_id_10kB": (form(photo, job_id="a" * 10_000), 400, id_rule),
        "job_id_with_nul": (form(photo, job_id=b"job\x00id"), 400,
                            "field job_id contains a NUL byte"),
        "job_id_not_utf8": (form(photo, job_id=b"job-\xff\xfe"), 400,
                            "field job_id is not valid UTF-8"),
        "user_id_slash": (form(photo, user_id="user/1"), 400, "user_id is invalid"),
        "provider_openai": (form(photo, provider="openai"), 400, "provider 'openai' is not served"),
        "provider_empty": (form(photo, provider=""), 400, "provider '' is not served"),
    }


def _bad_forms(photo: bytes) -> dict[str, tuple[bytes, int, str]]:
    return {
        "missing_user_image": (body(part("user_id", "u"), part("job_id", "j")), 400,
                               "field user_image is missing"),
        "missing_job_id": (body(photo_part(photo, "p.jpg"), part("user_id", "u")), 400,
                           "field job_id is missing"),
        "missing_user_id": (body(photo_part(photo, "p.jpg"), part("job_id", "j")), 400,
                            "field user_id is missing"),
        "duplicate_job_id": (form(photo, extra=(part("job_id", "again"),)), 400,
                             "field job_id is given more than once"),
        "duplicate_user_image": (form(photo, extra=(photo_part(photo, "b.jpg"),)), 400,
                                 "field user_image is given more than once"),
        "hundred_parts": (form(photo, extra=tuple(part(f"x{i}", "1") for i in range(97))), 400,
                          "the multipart body has more than 10 parts"),
        "no_closing_boundary": (body(photo_part(photo, "p.jpg"), close=False), 400,
                                "the multipart body is incomplete"),
        "part_without_disposition": (body(part("", "x", head=b"Content-Type: text/plain")), 400,
                                     "a multipart part has no Content-Disposition header"),
        "part_headers_not_utf8": (body(part("", "x", head=b'Content-Disposition: form-data; '
                                                          b'name="\xff\xfe"')), 400,
                                  "multipart part headers are not valid UTF-8"),
    }


def _bad_content_types(good: bytes) -> dict[str, BadRequest]:
    return {
        "content_type_json": BadRequest(b'{"job_id": "j"}', "application/json", 415,
                                        "Content-Type must be multipart/form-data"),
        "content_type_urlencoded": BadRequest(b"job_id=j&user_id=u", "application/x-www-form-"
                                              "urlencoded", 415, "Content-Type must be"),
        "content_type_missing_boundary": BadRequest(good, "multipart/form-data", 400,
                                                    "Content-Type multipart/form-data needs a "
                                                    "boundary"),
        "content_type_wrong_boundary": BadRequest(good, "multipart/form-data; boundary=other",
                                                  400, "the multipart body is incomplete"),
    }


def odd_photos(upright: Image.Image) -> dict[str, tuple[bytes, Image.Image]]:
    """Photos in every unusual layout that must be accepted, each with the upright
    RGB image it displays as: ``{name: (file bytes, displayed image)}``."""
    rgb = upright.convert("RGB")
    gray = rgb.convert("L")
    gray16 = Image.fromarray(np.asarray(gray).astype(np.uint16) * 257)  # 16-bit samples
    photos = {
        "jpeg_cmyk": (encode(rgb.convert("CMYK"), "JPEG", quality=92), rgb),
        "jpeg_grayscale": (encode(gray, "JPEG", quality=92), gray),
        "png_16bit": (encode(gray16, "PNG"), gray),
        "png_palette": (encode(rgb.convert("P", palette=Image.Palette.ADAPTIVE), "PNG"), rgb),
        "png_alpha": (encode(rgb.convert("RGBA"), "PNG"), rgb),
    }
    # EXIF orientation: stored turned, displayed upright. 6 = rotate 90 CW to display,
    # 8 = rotate 90 CCW, 3 = rotate 180.
    for tag, stored in ((6, Image.Transpose.ROTATE_90), (8, Image.Transpose.ROTATE_270),
                        (3, Image.Transpose.ROTATE_180)):
        exif = Image.Exif()
        exif[ORIENTATION] = tag
        photos[f"jpeg_exif_orientation_{tag}"] = (
            encode(rgb.transpose(stored), "JPEG", quality=92, exif=exif.tobytes()), rgb)
    return photos
