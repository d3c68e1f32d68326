"""Images in and out: the conversions between what people have and what the model codes."""

from __future__ import annotations

import io
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import ImageError

SUPPORTED_MODES = ("RGB", "L", "RGBA", "LA")
STORED_BITS = "lalic_stored_bits"  # info key: bits per sample in the file, before Pillow's reduction


def _stored_bits(img: Image.Image) -> int:
    """Bits per sample in the file, read from the raw mode of its (not yet loaded) tiles:
    Pillow opens 16-bit RGB(A) as 8-bit modes, so the mode alone does not tell."""
    for tile in getattr(img, "tile", ()):
        args = tile[3]  # (codec, extents, offset, args); args is the raw mode or starts with it
        raw = args if isinstance(args, str) else (args or ("",))[0]
        if isinstance(raw, str) and ";16" in raw:
            return 16
    return 16 if img.mode.startswith("I;16") else 8


@dataclass
class PreparedImage:
    """An image ready for the model, plus what is needed to restore it exactly."""

    rgb: torch.Tensor  # 1 x 3 x H x W float in [0, 1]
    mode: str  # one of SUPPORTED_MODES: what decoding gives back
    bit_depth: int  # of what decoding gives back: always 8, whatever the source had
    alpha: bytes | None = None  # zlib-compressed 8-bit alpha plane
    icc: bytes | None = None
    notes: tuple[str, ...] = ()

    @property
    def height(self) -> int:
        return self.rgb.shape[-2]

    @property
    def width(self) -> int:
        return self.rgb.shape[-1]


def open_image(path_or_bytes: str | Path | bytes, *, name: str | None = None) -> Image.Image:
    """Open an image file; errors become ImageError with a one-line reason that starts with
    ``name`` (default: the path, or "input" for bytes)."""
    is_bytes = isinstance(path_or_bytes, bytes)
    name = name or ("input" if is_bytes else str(path_or_bytes))
    try:
        img = Image.open(io.BytesIO(path_or_bytes) if is_bytes else path_or_bytes)
        img.info[STORED_BITS] = _stored_bits(img)
        img.load()
    except FileNotFoundError:
        raise ImageError(f"{name}: no such file") from None
    except IsADirectoryError:
        raise ImageError(f"{name}: is a directory") from None
    except Image.DecompressionBombError as e:
        raise ImageError(f"{name}: refused by the decompression-bomb guard: {e}") from None
    except UnidentifiedImageError:  # its message repeats the path, or shows a BytesIO's repr
        raise ImageError(f"{name}: not a readable image (unknown format)") from None
    except (OSError, ValueError, SyntaxError) as e:
        raise ImageError(f"{name}: not a readable image ({e})") from None
    return img


def prepare(img: Image.Image) -> PreparedImage:
    """Orientation applied, colour converted, alpha split off, depth reduced to 8 bits (with a
    note: decoding gives 8 bits back, and the header says so)."""
    notes: list[str] = []
    if getattr(img, "n_frames", 1) > 1:
        notes.append("animated image: only the first frame is coded")
        img.seek(0)
    icc = img.info.get("icc_profile") or None
    wide = img.info.get(STORED_BITS, _stored_bits(img)) > 8 or img.mode == "I"
    img = ImageOps.exif_transpose(img)
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.float64)
        peak = 65535.0 if img.mode != "I" or arr.max() > 255 else 255.0
        img = Image.fromarray(np.clip(np.round(arr / peak * 255.0), 0, 255).astype(np.uint8), "L")
    elif img.mode == "CMYK":
        img = img.convert("RGB")
        notes.append("CMYK input converted to RGB")
    elif img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    elif img.mode == "1":
        img = img.convert("L")
    elif img.mode not in SUPPORTED_MODES:
        img = img.convert("RGBA" if "A" in img.mode else "RGB")
    if wide:
        notes.append("16-bit input: coded and decoded at 8 bits")
    mode = img.mode
    alpha = None
    if mode in ("RGBA", "LA"):
        alpha = zlib.compress(np.asarray(img.getchannel("A")).tobytes(), 9)
    rgb = np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0
    tensor = torch.from_numpy(rgb).permute(2, 0, 1).unsqueeze(0).contiguous()
    return PreparedImage(tensor, mode, 8, alpha, icc, tuple(notes))


def restore(x_hat: torch.Tensor, mode: str, alpha: bytes | None = None) -> Image.Image:
    """The decoded 1 x 3 x H x W reconstruction back in the original colour mode."""
    rgb = (x_hat[0].clamp(0, 1) * 255.0).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    img = Image.fromarray(np.ascontiguousarray(rgb), "RGB")
    if mode in ("L", "LA"):
        img = img.convert("L")
    if mode in ("RGBA", "LA"):
        if alpha is None:
            raise ImageError("file declares an alpha channel but carries none")
        n = img.width * img.height
        inflate = zlib.decompressobj()
        try:
            raw = inflate.decompress(alpha, n)
        except zlib.error:
            raise ImageError("corrupted alpha plane") from None
        if len(raw) != n or inflate.unconsumed_tail or not inflate.eof:
            raise ImageError("corrupted alpha plane (wrong size)")
        plane = np.frombuffer(raw, np.uint8)
        img.putalpha(Image.fromarray(plane.reshape(img.height, img.width), "L"))
    return img
