"""Photo decoding: accepted formats, limits, and every pixel layout to upright RGB."""

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from common.photo import PhotoError, decode_rgb, probe

LIMIT = 10_000_000


def _encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def _gradient(w=40, h=30) -> Image.Image:
    arr = np.zeros((h, w, 3), np.uint8)
    arr[..., 0] = np.arange(w)[None, :] * 5
    arr[..., 1] = np.arange(h)[:, None] * 7
    arr[..., 2] = 200
    return Image.fromarray(arr)


def test_rgb_png_is_exact():
    img = _gradient()
    out = decode_rgb(_encode(img, "PNG"), LIMIT)
    assert out.dtype == np.uint8 and out.shape == (30, 40, 3)
    assert np.array_equal(out, np.asarray(img))


@pytest.mark.parametrize("mode", ["L", "P", "RGBA", "LA", "CMYK", "1"])
def test_other_layouts_become_rgb(mode):
    fmt = "JPEG" if mode == "CMYK" else "PNG"
    out = decode_rgb(_encode(_gradient().convert(mode), fmt), LIMIT)
    assert out.shape == (30, 40, 3) and out.dtype == np.uint8


def test_alpha_is_dropped_not_composited():
    rgba = np.zeros((20, 20, 4), np.uint8)
    rgba[..., :3] = (10, 200, 30)
    rgba[..., 3] = 0  # fully transparent: cv2.imread(IMREAD_COLOR) keeps the colour
    out = decode_rgb(_encode(Image.fromarray(rgba, "RGBA"), "PNG"), LIMIT)
    assert tuple(out[5, 5]) == (10, 200, 30)


def test_16_bit_grayscale_scales_like_opencv():
    arr = np.full((20, 20), 0xABCD, np.uint16)
    out = decode_rgb(_encode(Image.fromarray(arr), "PNG"), LIMIT)
    assert tuple(out[0, 0]) == (0xAB, 0xAB, 0xAB)


def test_exif_orientation_is_applied():
    img = _gradient(40, 30)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise for display
    out = decode_rgb(_encode(img, "JPEG", exif=exif.tobytes(), quality=95), LIMIT)
    assert out.shape == (40, 30, 3)


def test_formats_outside_jpeg_png_are_refused_with_415():
    for fmt in ("GIF", "TIFF", "WEBP", "BMP"):
        with pytest.raises(PhotoError) as err:
            probe(_encode(_gradient(), fmt), LIMIT)
        assert err.value.status == 415 and "JPEG, PNG" in str(err.value)


def test_not_an_image_and_empty():
    with pytest.raises(PhotoError) as err:
        probe(b"hello, this is text", LIMIT)
    assert err.value.status == 415
    with pytest.raises(PhotoError) as err:
        probe(b"", LIMIT)
    assert err.value.status == 422


def test_truncated_jpeg_is_refused():
    data = _encode(_gradient(200, 200), "JPEG")
    with pytest.raises(PhotoError) as err:
        decode_rgb(data[: len(data) // 2], LIMIT)
    assert err.value.status == 422


def _png_header_claiming(width: int, height: int) -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return (struct.pack(">I", len(body)) + kind + body
                + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


def test_decompression_bomb_is_refused_from_the_header_with_413():
    with pytest.raises(PhotoError) as err:
        decode_rgb(_png_header_claiming(50_000, 50_000), LIMIT)
    assert err.value.status == 413 and "50000x50000" in str(err.value)


def test_tiny_images_are_refused():
    with pytest.raises(PhotoError) as err:
        probe(_encode(_gradient(8, 8), "PNG"), LIMIT)
    assert err.value.status == 422


def test_multi_picture_jpeg_from_a_phone_camera_is_a_jpeg():
    # Many phone cameras write MPO: a JPEG with extra pictures appended (Pillow names the
    # format "MPO"). It is a .jpg to every user, so it is accepted as JPEG, first picture.
    first, second = _gradient(40, 30), Image.new("RGB", (40, 30), (0, 255, 0))
    data = _encode(first, "MPO", save_all=True, append_images=[second], quality=95)
    assert Image.open(io.BytesIO(data)).format == "MPO"
    assert probe(data, LIMIT) == ("JPEG", 40, 30)
    out = decode_rgb(data, LIMIT)
    assert out.shape == (30, 40, 3)
    assert abs(int(out[15, 20, 1]) - 15 * 7) < 12  # the first picture, not the green one


# EXIF holding orientation 6 (rotate to display) next to a tag whose type is wrong
# (XResolution as ASCII): Pillow's ImageOps.exif_transpose raised TypeError / struct.error
# re-writing such metadata, so a worker reported worker_error (retried) and the CLI crashed.
_BAD_EXIF = bytes.fromhex("4578696600004d4d002a000000080002011a00020000000443616d0001120003"
                          "000000010006000000000000")


def test_odd_exif_metadata_still_decodes_upright():
    out = decode_rgb(_encode(_gradient(40, 30), "JPEG", exif=_BAD_EXIF, quality=95), LIMIT)
    assert out.shape == (40, 30, 3)  # orientation 6 applied


def test_undecodable_bytes_never_raise_anything_but_photo_error(monkeypatch):
    import common.photo as photo

    def broken(img):
        raise struct.error("bad tag")
    monkeypatch.setattr(photo, "_to_rgb", broken)
    with pytest.raises(PhotoError) as err:
        decode_rgb(_encode(_gradient(), "PNG"), LIMIT)
    assert err.value.status == 422
