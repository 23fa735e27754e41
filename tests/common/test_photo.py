"""Photo decoding: accepted formats, limits, and every pixel layout to upright RGB."""

import io
import struct

import numpy as np
import pytest
from PIL import Image

from common.photo import PhotoError, check_decodable, decode_rgb, probe
from tests.support.images import encode, png_bomb

LIMIT = 10_000_000

#: EXIF tag of the orientation.
ORIENTATION = 0x0112


def _gradient(w=40, h=30) -> Image.Image:
    arr = np.zeros((h, w, 3), np.uint8)
    arr[..., 0] = np.arange(w)[None, :] * 5
    arr[..., 1] = np.arange(h)[:, None] * 7
    arr[..., 2] = 200
    return Image.fromarray(arr)


def test_rgb_png_is_exact():
    img = _gradient()
    out = decode_rgb(encode(img, "PNG"), LIMIT)
    assert out.dtype == np.uint8 and out.shape == (30, 40, 3)
    assert np.array_equal(out, np.asarray(img))


@pytest.mark.parametrize("mode", ["L", "P", "RGBA", "LA", "CMYK", "1"])
def test_other_layouts_become_rgb(mode):
    fmt = "JPEG" if mode == "CMYK" else "PNG"
    out = decode_rgb(encode(_gradient().convert(mode), fmt), LIMIT)
    assert out.shape == (30, 40, 3) and out.dtype == np.uint8


def test_alpha_is_dropped_not_composited():
    rgba = np.zeros((20, 20, 4), np.uint8)
    rgba[..., :3] = (10, 200, 30)
    rgba[..., 3] = 0  # fully transparent: cv2.imread(IMREAD_COLOR) keeps the colour
    out = decode_rgb(encode(Image.fromarray(rgba, "RGBA"), "PNG"), LIMIT)
    assert tuple(out[5, 5]) == (10, 200, 30)


def test_16_bit_grayscale_scales_like_opencv():
    arr = np.full((20, 20), 0xABCD, np.uint16)
    out = decode_rgb(encode(Image.fromarray(arr), "PNG"), LIMIT)
    assert tuple(out[0, 0]) == (0xAB, 0xAB, 0xAB)


def _marked(width: int = 40, height: int = 30) -> np.ndarray:
    """Grey pixels with a red square in the top-left corner, as stored in the file."""
    arr = np.full((height, width, 3), 128, np.uint8)
    arr[:10, :10] = (255, 0, 0)
    return arr


def _red_corners(rgb: np.ndarray) -> list[str]:
    """The corners of ``rgb`` where the red marker is."""
    h, w = rgb.shape[:2]
    corners = {"top_left": rgb[4, 4], "top_right": rgb[4, w - 5],
               "bottom_left": rgb[h - 5, 4], "bottom_right": rgb[h - 5, w - 5]}
    return [name for name, (r, g, b) in corners.items() if r > 200 and g < 60 and b < 60]


# Stored top-left corner -> where it is displayed: 6 = rotate 90 degrees clockwise to
# display, 8 = 90 degrees counter-clockwise, 3 = 180 degrees, 1 = as stored.
@pytest.mark.parametrize("orientation, corner", [
    (1, "top_left"), (3, "bottom_right"), (6, "top_right"), (8, "bottom_left")])
def test_exif_orientation_is_applied(orientation, corner):
    exif = Image.Exif()
    exif[ORIENTATION] = orientation
    out = decode_rgb(encode(_marked(), "JPEG", exif=exif.tobytes(), quality=95), LIMIT)
    assert out.shape == ((40, 30, 3) if orientation in (6, 8) else (30, 40, 3))
    assert _red_corners(out) == [corner]


def test_formats_outside_jpeg_png_are_refused_with_415():
    for fmt in ("GIF", "TIFF", "WEBP", "BMP"):
        with pytest.raises(PhotoError) as err:
            probe(encode(_gradient(), fmt), LIMIT)
        assert err.value.status == 415 and "JPEG, PNG" in str(err.value)


def test_not_an_image_and_empty():
    with pytest.raises(PhotoError) as err:
        probe(b"hello, this is text", LIMIT)
    assert err.value.status == 415
    with pytest.raises(PhotoError) as err:
        probe(b"", LIMIT)
    assert err.value.status == 422


def test_truncated_jpeg_is_refused():
    data = encode(_gradient(200, 200), "JPEG")
    with pytest.raises(PhotoError) as err:
        decode_rgb(data[: len(data) // 2], LIMIT)
    assert err.value.status == 422


def test_decompression_bomb_is_refused_from_the_header_with_413():
    with pytest.raises(PhotoError) as err:
        decode_rgb(png_bomb(50_000, 50_000), LIMIT)
    assert err.value.status == 413 and "50000x50000" in str(err.value)


def test_tiny_images_are_refused():
    with pytest.raises(PhotoError) as err:
        probe(encode(_gradient(8, 8), "PNG"), LIMIT)
    assert err.value.status == 422


def test_multi_picture_jpeg_from_a_phone_camera_is_a_jpeg():
    # Many phone cameras write MPO: a JPEG with extra pictures appended (Pillow names the
    # format "MPO"). It is a .jpg to every user, so it is accepted as JPEG, first picture.
    first, second = _gradient(40, 30), Image.new("RGB", (40, 30), (0, 255, 0))
    data = encode(first, "MPO", save_all=True, append_images=[second], quality=95)
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
    out = decode_rgb(encode(_marked(), "JPEG", exif=_BAD_EXIF, quality=95), LIMIT)
    assert out.shape == (40, 30, 3) and _red_corners(out) == ["top_right"]  # orientation 6


def test_undecodable_bytes_never_raise_anything_but_photo_error(monkeypatch):
    from common import photo

    def broken(img):
        raise struct.error("bad tag")
    monkeypatch.setattr(photo, "_to_rgb", broken)
    with pytest.raises(PhotoError) as err:
        decode_rgb(encode(_gradient(), "PNG"), LIMIT)
    assert err.value.status == 422


def _verdict(check, data: bytes) -> int:
    """0 when ``check`` accepts ``data``, else the PhotoError's status."""
    try:
        check(data, LIMIT)
    except PhotoError as exc:
        return exc.status
    return 0


def _cuts(data: bytes) -> list[bytes]:
    """``data`` cut short at many points, and with a run of bytes in its middle damaged."""
    damaged = bytearray(data)
    damaged[len(data) // 2:len(data) // 2 + 64] = bytes(64)
    return [data, bytes(damaged)] + [data[:int(len(data) * f)]
                                     for f in (0.1, 0.3, 0.5, 0.7, 0.9, 0.98, 0.999)]


@pytest.mark.parametrize("kind", ["baseline", "progressive", "grey", "cmyk", "png"])
def test_the_front_ends_check_refuses_exactly_what_the_decode_refuses(kind):
    """check_decodable (a JPEG at 1/8 scale) and decode_rgb (the worker's) agree on
    whole, truncated and damaged files."""
    photo = _gradient(320, 240)
    data = {"baseline": lambda: encode(photo, "JPEG", quality=90),
            "progressive": lambda: encode(photo, "JPEG", quality=90, progressive=True),
            "grey": lambda: encode(photo.convert("L"), "JPEG"),
            "cmyk": lambda: encode(photo.convert("CMYK"), "JPEG"),
            "png": lambda: encode(photo, "PNG")}[kind]()
    verdicts = [(_verdict(check_decodable, d), _verdict(decode_rgb, d)) for d in _cuts(data)]
    assert all(mine == theirs for mine, theirs in verdicts), verdicts
    assert verdicts[0] == (0, 0) and any(mine == 422 for mine, _ in verdicts)
    assert check_decodable(data, LIMIT) == ("PNG" if kind == "png" else "JPEG")
