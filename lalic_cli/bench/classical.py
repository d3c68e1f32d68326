"""Classical codecs through Pillow (JPEG, WebP, AVIF), coded in memory, for ``--vs``."""

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


CODECS: dict[str, ClassicalCodec] = {
    c.key: c
    for c in (
        ClassicalCodec("jpeg444", "JPEG 4:4:4", "JPEG", (10, 20, 30, 45, 60, 75, 85, 95),
                       lambda q: {"quality": q, "subsampling": 0}),
        ClassicalCodec("jpeg420", "JPEG 4:2:0", "JPEG", (10, 20, 30, 45, 60, 75, 85, 95),
                       lambda q: {"quality": q, "subsampling": 2}),
        ClassicalCodec("webp", "WebP", "WEBP", (5, 15, 30, 45, 60, 75, 85, 95),
                       lambda q: {"quality": q, "method": 4}),
        ClassicalCodec("avif", "AVIF", "AVIF", (10, 20, 30, 45, 60, 70, 80, 90),
                       lambda q: {"quality": q, "speed": 6}),
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


def usable(keys: list[str]) -> tuple[list[str], list[str]]:
    """The codecs that can run here, and one warning per codec that cannot."""
    ok, warnings = [], []
    for key in keys:
        if CODECS[key].format == "AVIF":
            reason = avif_support()
            if reason:
                warnings.append(f"--vs avif skipped: {reason}")
                continue
        ok.append(key)
    return ok, warnings


@dataclass
class Coded:
    nbytes: int
    reconstruction: np.ndarray  # H x W x 3 uint8
    encoding_time: float
    decoding_time: float


def code_image(codec: ClassicalCodec, rgb8: np.ndarray, level: int) -> Coded:
    """Encode an H x W x 3 uint8 image at one setting, decode it back, time both."""
    img = Image.fromarray(rgb8, "RGB")
    buf = io.BytesIO()
    t0 = time.perf_counter()
    img.save(buf, format=codec.format, **codec.options(level))
    t1 = time.perf_counter()
    data = buf.getvalue()
    back = Image.open(io.BytesIO(data))
    back.load()
    t2 = time.perf_counter()
    rec = np.asarray(back.convert("RGB") if back.mode != "RGB" else back, dtype=np.uint8)
    return Coded(len(data), rec, t1 - t0, t2 - t1)
