"""Classical codecs through Pillow (JPEG, WebP, AVIF), coded in memory, for ``--vs`` and as the
comparisons of extreme-rate runs (AVIF / WebP at their lowest setting, optionally on a downscaled copy)."""

from __future__ import annotations

import io
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
from PIL import Image

from ..errors import InputError


@dataclass(frozen=True)
class ClassicalCodec:
    key: str  # name used by --vs and in JSON / CSV
    label: str  # name shown in tables and plots
    format: str  # Pillow format name
    levels: tuple[int, ...]  # the quality settings swept
    options: Callable[[int], dict] = field(repr=False)
    # Coded at 1/scale of the size (Lanczos) and upscaled back (Lanczos): at extreme rates a smaller
    # image at a usable quality often looks better than the full size at the lowest setting.
    scale: int = 1

    @property
    def description(self) -> str:
        """What the JSON says about this codec."""
        if self.scale == 1:
            return f"Pillow {self.format}"
        return f"Pillow {self.format} on a {self.scale}x Lanczos-downscaled copy, upscaled back with Lanczos"


#: the lowest quality Pillow's AVIF and WebP encoders accept (both take 0 .. 100)
MIN_QUALITY = 0


def _avif(q: int) -> dict:
    return {"quality": q, "speed": 6}


def _webp(q: int) -> dict:
    return {"quality": q, "method": 4}


CODECS: dict[str, ClassicalCodec] = {
    c.key: c
    for c in (
        ClassicalCodec("jpeg444", "JPEG 4:4:4", "JPEG", (10, 20, 30, 45, 60, 75, 85, 95),
                       lambda q: {"quality": q, "subsampling": 0}),
        ClassicalCodec("jpeg420", "JPEG 4:2:0", "JPEG", (10, 20, 30, 45, 60, 75, 85, 95),
                       lambda q: {"quality": q, "subsampling": 2}),
        ClassicalCodec("webp", "WebP", "WEBP", (5, 15, 30, 45, 60, 75, 85, 95), _webp),
        ClassicalCodec("avif", "AVIF", "AVIF", (10, 20, 30, 45, 60, 70, 80, 90), _avif),
        # the extreme-rate comparisons (``--codec mrt`` adds them): one point each, the lowest setting
        ClassicalCodec("avif-min", "AVIF min", "AVIF", (MIN_QUALITY,), _avif),
        *(ClassicalCodec(f"{fmt.lower()}-down{s}", f"{label} down {s}x", fmt, (MIN_QUALITY,), opts, scale=s)
          for fmt, label, opts in (("AVIF", "AVIF", _avif), ("WEBP", "WebP", _webp)) for s in (2, 4)),
    )
}

#: --vs names that stand for several codecs
ALIASES = {"jpeg": ("jpeg444", "jpeg420"), "jpg": ("jpeg444", "jpeg420")}


def parse_vs(text: str | None) -> list[str]:
    """``"jpeg,webp"`` -> ``["jpeg444", "jpeg420", "webp"]`` (order kept, duplicates dropped)."""
    keys: list[str] = []
    for raw in (text or "").replace(" ", ",").split(","):
        name = raw.strip().lower()
        if not name:
            continue
        if name in ALIASES:
            found = ALIASES[name]
        elif name in CODECS:
            found = (name,)
        else:
            known = ", ".join([*ALIASES, *CODECS])
            raise InputError(f"--vs: unknown codec {raw.strip()!r} (known: {known})")
        keys.extend(k for k in found if k not in keys)
    return keys


def avif_support() -> str | None:
    """None when Pillow can write AVIF, else the reason why not."""
    from PIL import features

    try:
        if features.check("avif"):
            return None
    except Exception:  # older Pillow: "avif" is not a known feature name
        pass
    try:
        import pillow_avif  # noqa: F401  (registers the AVIF plugin)
    except ImportError:
        return "this Pillow cannot write AVIF (Pillow >= 11.3 with libavif, or the pillow-avif-plugin package)"
    return None


#: Pillow formats whose encoder may be missing: format -> check (None when usable, else why not)
SUPPORT_CHECKS: dict[str, Callable[[], str | None]] = {"AVIF": lambda: avif_support()}


def usable(keys: list[str]) -> tuple[list[str], list[str]]:
    """The codecs that can run here, and one note per missing encoder naming the codecs skipped."""
    ok: list[str] = []
    missing: dict[str, list[str]] = {}  # reason -> keys
    for key in keys:
        check = SUPPORT_CHECKS.get(CODECS[key].format)
        reason = check() if check else None
        if reason:
            missing.setdefault(reason, []).append(key)
        else:
            ok.append(key)
    return ok, [f"{', '.join(skipped)} skipped: {reason}" for reason, skipped in missing.items()]


@dataclass
class Coded:
    nbytes: int
    reconstruction: np.ndarray  # H x W x 3 uint8
    encoding_time: float
    decoding_time: float


def scaled_size(width: int, height: int, scale: int) -> tuple[int, int]:
    """The size a ``scale``-times downscaled copy is coded at (at least 1 x 1)."""
    return max(1, round(width / scale)), max(1, round(height / scale))


def code_image(codec: ClassicalCodec, rgb8: np.ndarray, level: int) -> Coded:
    """Encode an H x W x 3 uint8 image at one setting, decode it back, time both.

    With ``codec.scale`` > 1 the downscale counts as encoding and the upscale back to the
    original size as decoding: the reconstruction always has the original size.
    """
    img = Image.fromarray(rgb8, "RGB")
    size = img.size
    buf = io.BytesIO()
    t0 = time.perf_counter()
    if codec.scale > 1:
        img = img.resize(scaled_size(*size, codec.scale), Image.Resampling.LANCZOS)
    img.save(buf, format=codec.format, **codec.options(level))
    t1 = time.perf_counter()
    data = buf.getvalue()
    back = Image.open(io.BytesIO(data))
    back.load()
    if back.mode != "RGB":
        back = back.convert("RGB")
    if back.size != size:
        back = back.resize(size, Image.Resampling.LANCZOS)
    t2 = time.perf_counter()
    return Coded(len(data), np.asarray(back, dtype=np.uint8), t1 - t0, t2 - t1)
