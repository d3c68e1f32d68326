"""Every kind of image people have: formats, modes, alpha, ICC, EXIF, odd sizes."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from lalic_cli import decode_bytes, encode_image
from lalic_cli.bitstream import pack, unpack
from lalic_cli.codec import encode_prepared
from lalic_cli.errors import LalicError
from lalic_cli.image import open_image, prepare


def gradient(w: int, h: int, mode: str = "RGB") -> Image.Image:
    y, x = np.mgrid[0:h, 0:w]
    rgb = np.stack([x * 255 // max(w - 1, 1), y * 255 // max(h - 1, 1), (x + y) * 127 // max(w + h - 2, 1)], -1)
    return Image.fromarray(rgb.astype(np.uint8), "RGB").convert(mode)


def reopen(img: Image.Image, fmt: str, **kw) -> Image.Image:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return Image.open(io.BytesIO(buf.getvalue()))


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP", "BMP", "TIFF", "GIF"])
def test_formats_round_trip(tiny_checkpoints, fmt):
    src = reopen(gradient(40, 24), fmt)
    back = decode_bytes(encode_image(src, 3))
    assert back.size == (40, 24)
    assert back.mode == ("RGB" if fmt != "GIF" else back.mode)


@pytest.mark.parametrize("size", [(1, 1), (7, 3), (65, 129), (3, 70)])
def test_tiny_and_odd_sizes(tiny_checkpoints, size):
    data = encode_image(gradient(*size), 1)
    back = decode_bytes(data)
    assert back.size == size
    h = unpack(data).header
    assert (h.width, h.height) == size


def test_grayscale_stays_grayscale(tiny_checkpoints):
    back = decode_bytes(encode_image(gradient(32, 20, "L"), 3))
    assert back.mode == "L" and back.size == (32, 20)


@pytest.mark.parametrize("mode", ["RGBA", "LA"])
def test_alpha_is_lossless(tiny_checkpoints, mode):
    img = gradient(33, 17, mode)
    alpha = np.random.default_rng(0).integers(0, 256, (17, 33), dtype=np.uint8)
    img.putalpha(Image.fromarray(alpha, "L"))
    data = encode_image(img, 3)
    assert "alpha" in unpack(data).extras
    back = decode_bytes(data)
    assert back.mode == mode
    assert np.array_equal(np.asarray(back.getchannel("A")), alpha)


def test_palette_with_transparency(tiny_checkpoints):
    img = gradient(20, 20).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    img.info["transparency"] = 0
    back = decode_bytes(encode_image(img, 3))
    assert back.mode == "RGBA" and back.size == (20, 20)


def test_cmyk_converted_with_note(tiny_checkpoints):
    p = prepare(reopen(gradient(24, 16).convert("CMYK"), "JPEG"))
    assert p.mode == "RGB" and any("CMYK" in n for n in p.notes)
    assert decode_bytes(encode_prepared(p, 3).data).mode == "RGB"


def png_16bit_rgb(rgb16: np.ndarray) -> bytes:
    """A 16-bit RGB PNG written by hand (Pillow cannot write one)."""
    h, w, _ = rgb16.shape
    raw = b"".join(b"\0" + row.astype(">u2").tobytes() for row in rgb16)

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def test_16bit_grey_noted_and_header_says_8(tiny_checkpoints):
    arr = (np.arange(24 * 16, dtype=np.uint16).reshape(16, 24) * 170).astype(np.uint16)
    p = prepare(reopen(Image.fromarray(arr), "PNG"))
    assert any("16-bit" in n and "8 bits" in n for n in p.notes)
    enc = encode_prepared(p, 3)
    back = decode_bytes(enc.data)
    # The header tells what decoding gives: 8 bits, in grey.
    assert unpack(enc.data).header.bit_depth == 8
    assert back.mode == "L" and np.asarray(back).dtype == np.uint8


def test_16bit_rgb_noted_and_header_says_8(tiny_checkpoints):
    rgb16 = np.asarray(gradient(24, 16), dtype=np.uint16) * 257
    src = png_16bit_rgb(rgb16)
    assert Image.open(io.BytesIO(src)).mode == "RGB"  # Pillow itself reduces it silently
    p = prepare(open_image(src))
    assert any("16-bit" in n and "8 bits" in n for n in p.notes)
    enc = encode_prepared(p, 3)
    assert unpack(enc.data).header.bit_depth == 8
    assert decode_bytes(enc.data).mode == "RGB"
    assert not prepare(open_image(reopen(gradient(24, 16), "PNG").fp.getvalue())).notes


def test_old_files_with_16_in_the_header_still_decode(tiny_checkpoints):
    """Files written before the header said 8 for 16-bit sources decode as they always did."""
    data = encode_image(gradient(24, 16, "L"), 3)
    lal = unpack(data)
    lal.header.bit_depth = 16
    old = pack(lal)
    assert unpack(old).header.bit_depth == 16
    assert np.array_equal(np.asarray(decode_bytes(old)), np.asarray(decode_bytes(data)))


def test_icc_profile_carried(tiny_checkpoints):
    from PIL import ImageCms

    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    img = reopen(gradient(16, 16), "PNG", icc_profile=icc)
    back = decode_bytes(encode_image(img, 3))
    assert back.info.get("icc_profile") == icc


def test_exif_orientation_applied(tiny_checkpoints):
    img = gradient(30, 10)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    src = reopen(img, "JPEG", exif=exif.tobytes())
    back = decode_bytes(encode_image(src, 3))
    assert back.size == (10, 30)


def test_animated_gif_first_frame_noted(tiny_checkpoints):
    frames = [gradient(12, 12), gradient(12, 12).transpose(Image.Transpose.ROTATE_90)]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:])
    p = prepare(Image.open(io.BytesIO(buf.getvalue())))
    assert any("first frame" in n for n in p.notes)


def test_pixel_limit(tiny_checkpoints):
    with pytest.raises(LalicError, match="over the limit of 100"):
        encode_image(gradient(20, 10), 3, max_pixels=100)


def test_same_bits_every_time(tiny_checkpoints):
    img = gradient(70, 50)
    a, b = encode_image(img, 3), encode_image(img, 3)
    assert a == b
    assert np.array_equal(np.asarray(decode_bytes(a)), np.asarray(decode_bytes(a)))
