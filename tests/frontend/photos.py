"""Photos made in memory for the front-end tests (nothing is downloaded or read from disk)."""

from __future__ import annotations

import numpy as np
from PIL import Image

from tests.support.images import encode


def _gradient(width: int = 64, height: int = 48) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width]
    return np.stack([x * 4 % 256, y * 5 % 256, (x + y) % 256], axis=2).astype(np.uint8)


def jpeg() -> bytes:
    return encode(Image.fromarray(_gradient()), "JPEG", quality=90)


def png() -> bytes:
    return encode(Image.fromarray(_gradient()), "PNG")


def accepted_variants() -> dict[str, bytes]:
    """Every pixel layout the API must accept, by name."""
    rgb = Image.fromarray(_gradient())
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees on display
    gray16 = Image.fromarray(_gradient()[:, :, 0].astype(np.uint16) * 257)  # mode I;16
    return {
        "jpeg_rgb": jpeg(),
        "png_rgb": png(),
        "jpeg_cmyk": encode(rgb.convert("CMYK"), "JPEG"),
        "jpeg_gray": encode(rgb.convert("L"), "JPEG"),
        "png_gray": encode(rgb.convert("L"), "PNG"),
        "png_16bit": encode(gray16, "PNG"),
        "png_palette": encode(rgb.convert("P"), "PNG"),
        "png_alpha": encode(rgb.convert("RGBA"), "PNG"),
        "jpeg_exif_rotated": encode(rgb, "JPEG", exif=exif.tobytes()),
        # a phone camera's multi-picture JPEG (Pillow calls it MPO), stored as .jpg
        "jpeg_mpo": encode(rgb, "MPO", save_all=True, append_images=[rgb.convert("L")]),
    }


def other_formats() -> dict[str, bytes]:
    """Real images in formats the API refuses (415)."""
    rgb = Image.fromarray(_gradient())
    return {"gif": encode(rgb, "GIF"), "tiff": encode(rgb, "TIFF"), "webp": encode(rgb, "WEBP"),
            "bmp": encode(rgb, "BMP")}


def truncated_jpeg() -> bytes:
    """A JPEG cut off in its scan data: the header reads fine, decoding fails."""
    noise = np.random.default_rng(0).integers(0, 256, (192, 256, 3), dtype=np.uint8)
    data = encode(Image.fromarray(noise), "JPEG", quality=90)
    return data[: len(data) // 2]

