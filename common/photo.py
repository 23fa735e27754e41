"""Photo decoding shared by the front end (validation) and the workers (inference).

One set of rules in one place: which formats are accepted, how large a photo
may be, and how every pixel layout becomes 8-bit RGB in the photo's displayed
orientation. The layout rules follow ``cv2.imread(IMREAD_COLOR)``, which the
SCHP reference extractor uses: EXIF orientation applied, alpha dropped (not
composited), 16-bit scaled down by 256, grayscale and palette expanded.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image, UnidentifiedImageError

#: Formats accepted for ``user_image`` (Pillow format names).
ACCEPTED_FORMATS = ("JPEG", "PNG")

#: Pillow formats that are JPEG files under another name: MPO is a JPEG with more pictures
#: appended (phone cameras write it); its first picture is the photo.
JPEG_ALIASES = ("MPO",)

#: EXIF orientation -> the transpose that shows the photo upright (as ImageOps.exif_transpose).
_ORIENTATION_TAG = 0x0112
_UPRIGHT = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
            4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE,
            6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
            8: Image.Transpose.ROTATE_90}

#: Smallest accepted side, in pixels; smaller images cannot hold a person.
MIN_SIDE = 16

# Size is checked against the caller's limit before decoding, so Pillow's own
# global bomb guard (which raises mid-decode) is not needed.
Image.MAX_IMAGE_PIXELS = None


class PhotoError(ValueError):
    """The upload is not a photo this service accepts.

    ``status`` is the HTTP status the front end answers with: 415 for a format
    that is not accepted, 413 for too many pixels, 422 for a broken file.
    """

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


def probe(data: bytes, max_pixels: int) -> tuple[str, int, int]:
    """Read only the header: ``(format, width, height)``, or raise PhotoError."""
    if not data:
        raise PhotoError("user_image is empty", 422)
    try:
        with Image.open(io.BytesIO(data)) as img:
            fmt, (width, height) = img.format, img.size
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        raise PhotoError("user_image is not an image (accepted formats: JPEG, PNG)", 415) from None
    if fmt in JPEG_ALIASES:
        fmt = "JPEG"
    if fmt not in ACCEPTED_FORMATS:
        raise PhotoError(f"user_image format {fmt} is not accepted (accepted formats: JPEG, PNG)", 415)
    if width * height > max_pixels:
        raise PhotoError(f"user_image is {width}x{height} pixels, more than the limit of "
                         f"{max_pixels} pixels", 413)
    if min(width, height) < MIN_SIDE:
        raise PhotoError(f"user_image is {width}x{height} pixels; each side must be at least "
                         f"{MIN_SIDE}", 422)
    return fmt, width, height


def decode_rgb(data: bytes, max_pixels: int) -> np.ndarray:
    """Decode a whole photo to an ``H x W x 3`` uint8 RGB array, upright.

    Raises :class:`PhotoError` for anything not accepted, including truncated
    files (Pillow would otherwise fill the missing rows with grey).
    """
    probe(data, max_pixels)
    return _decode(data, 1)


def check_decodable(data: bytes, max_pixels: int) -> str:
    """Raise :class:`PhotoError` where :func:`decode_rgb` would; return the format.

    The front end's check before it accepts a job, cheaper than the decode:
    a JPEG is decoded at 1/8 scale (libjpeg still reads and entropy-decodes
    every byte of the stream, so a truncated or corrupt file fails the same
    way; only the inverse DCT and the pixels are smaller), a PNG in full.
    """
    fmt, _, _ = probe(data, max_pixels)
    _decode(data, 8 if fmt == "JPEG" else 1)
    return fmt


def _decode(data: bytes, shrink: int) -> np.ndarray:
    """The upright RGB pixels of a probed photo, a JPEG's at 1/``shrink`` of its
    size (libjpeg's DCT scaling); every decoder failure is a 422 PhotoError."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                if shrink > 1:
                    width, height = img.size
                    img.draft(None, (max(1, width // shrink), max(1, height // shrink)))
                img.load()
                return _to_rgb(_upright(img))
    except (PhotoError, MemoryError):
        raise
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombWarning) as exc:
        raise PhotoError(f"user_image could not be decoded ({exc})", 422) from None
    except Exception as exc:  # hostile bytes reach decoder paths that raise other types  # noqa: BLE001
        raise PhotoError(f"user_image could not be decoded ({type(exc).__name__})", 422) from None


def _upright(img: Image.Image) -> Image.Image:
    """``img`` turned as its EXIF orientation says. Unlike ImageOps.exif_transpose this
    never re-writes the metadata, which fails on tags of an unexpected type; metadata
    that cannot be read at all counts as "no orientation"."""
    try:
        orientation = img.getexif().get(_ORIENTATION_TAG, 1)
    except Exception:  # unreadable EXIF: keep the pixels as stored  # noqa: BLE001
        return img
    method = _UPRIGHT.get(orientation) if isinstance(orientation, int) else None
    return img.transpose(method) if method is not None else img


def _to_rgb(img: Image.Image) -> np.ndarray:
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img).astype(np.uint32)
        # 16-bit samples are scaled to 8 bits like OpenCV does (value >> 8).
        gray = (arr >> 8).clip(0, 255).astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if img.mode == "RGBA" or img.mode == "LA" or img.mode == "PA":
        img = img.convert("RGBA").convert("RGB")  # alpha dropped, colours kept
    elif img.mode == "P":
        img = img.convert("RGBA").convert("RGB")
    elif img.mode != "RGB":
        img = img.convert("RGB")  # L, 1, CMYK, YCbCr, F
    return np.ascontiguousarray(np.asarray(img, dtype=np.uint8))
