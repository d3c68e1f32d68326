"""Pillow support for ``.lal`` files: ``Image.open`` and ``Image.save`` like any format.

::

    from PIL import Image
    from lalic_cli import register_pillow

    register_pillow()
    img = Image.open("photo.lal")          # reads the header: size and mode, no decoding
    img.load()                             # decodes (any pixel access does)
    img.save("copy.lal", quality=3.5)      # encodes; also effort=1..9, weights=..., device=...

Modelled on the pillow-heif / pillow-avif plugins: an ``ImageFile`` subclass whose
``_open`` parses the container (pure Python, cheap) and whose ``load`` decodes the
whole image at once, because the codec has no tiles to decode piecewise. torch is
imported on the first decode or encode, not by registering.

Errors are lalic's: a file that starts like a ``.lal`` file but is truncated or
corrupt raises :class:`~lalic_cli.bitstream.BitstreamError` from ``Image.open``;
missing weights raise :class:`~lalic_cli.zoo.registry.WeightsError` from ``load``;
a bad ``quality`` raises :class:`~lalic_cli.errors.QualityError` and a bad ``effort``
an :class:`~lalic_cli.errors.InputError` from ``save``, as ``encode_image`` does. A
file that is not a ``.lal`` file at all is left to Pillow's other formats (and so
gives Pillow's ``UnidentifiedImageError`` if none reads it).

Pillow's decompression-bomb guard (``Image.MAX_IMAGE_PIXELS``) applies to ``.lal``
files as to any format, in place of the command line's ``--max-pixels``.
"""

from __future__ import annotations

from typing import IO, Any

from PIL import Image, ImageFile

from .bitstream import MAGIC, unpack
from .effort import DEFAULT_EFFORT
from .errors import InputError

__all__ = ["FORMAT", "EXTENSION", "MIME", "LalImageFile", "register_pillow"]

FORMAT = "LAL"
EXTENSION = ".lal"
MIME = "image/x-lal"
DEFAULT_QUALITY = 3.0  # as ``lalic encode`` without ``-q``

_decode_options: dict[str, Any] = {"weights": None, "device": "auto"}


def _accept(prefix: bytes) -> bool:
    return prefix[: len(MAGIC)] == MAGIC


class LalImageFile(ImageFile.ImageFile):
    """A ``.lal`` file: size, mode and ICC profile from the header; pixels decoded on ``load``."""

    format = FORMAT
    format_description = "LALIC learned image codec"

    def _open(self) -> None:
        data = self.fp.read()
        lal = unpack(data, max_pixels=None)  # Pillow's bomb check follows, on self.size
        h = lal.header
        self._size = (h.width, h.height)
        self._mode = h.mode
        if "icc" in lal.extras:
            self.info["icc_profile"] = lal.extras["icc"]
        self.info["lal_weights"] = h.weights_name
        self.info["lal_quality"] = h.quality
        self._lal_data: bytes | None = data
        self.tile = []

    def load(self) -> Any:
        if self._lal_data is not None:
            from .codec import decode_bytes

            decoded = decode_bytes(self._lal_data, max_pixels=None, **_decode_options)
            self.im = decoded.im
            self._lal_data = None
        return super().load()


def _save(im: Image.Image, fp: IO[bytes], filename: str | bytes) -> None:
    from .codec import DEFAULT_MAX_PIXELS, encode_image

    info = im.encoderinfo
    quality = info.get("quality", DEFAULT_QUALITY)
    data = encode_image(im, quality, weights=info.get("weights"), device=info.get("device", "auto"),
                        max_pixels=info.get("max_pixels", DEFAULT_MAX_PIXELS),
                        effort=info.get("effort", DEFAULT_EFFORT))
    fp.write(data)


def register_pillow(*, weights: str | None = None, device: str = "auto") -> None:
    """Teach Pillow to open and save ``.lal`` files (idempotent).

    ``weights`` and ``device`` are the decoding defaults (``Image.open`` takes no
    options): by default the weights the file names, on a GPU if there is one.
    Encoding options go to ``save`` itself.
    """
    if device not in ("auto", "cpu", "cuda"):
        raise InputError(f"unknown device {device!r} (auto, cpu or cuda)")
    _decode_options.update(weights=weights, device=device)
    Image.register_open(FORMAT, LalImageFile, _accept)
    Image.register_save(FORMAT, _save)
    Image.register_extension(FORMAT, EXTENSION)
    Image.register_mime(FORMAT, MIME)
