"""The side-by-side picture of ``--picture``: one image, the original and every codec's
reconstruction at its rate point closest to a target bpp, each tile labelled with codec and bpp.

People judge extreme rates by eye (PSNR barely separates a blurred image from one with invented
texture), so the tiles are shown at full resolution, never scaled.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ..fileio import atomic_write
from .runner import Result, comparison

TARGET_BPP = 0.02
COLUMNS = 4  # tiles per row: Kodak's 768-pixel-wide images make a picture about 3100 pixels wide
GAP = 8  # pixels between tiles
LABEL_HEIGHT = 44  # two lines of the default font above each tile
PAD = 4
FONT_SIZE = 15


@dataclass
class Tile:
    label: str  # two lines: codec and setting, then rate and PSNR
    image: np.ndarray  # H x W x 3 uint8


def closest(records: list[dict], image: str, target: float = TARGET_BPP) -> dict | None:
    """``image``'s record whose bpp is nearest ``target`` in ratio (0.01 and 0.04 are equally far
    from 0.02); None when it has no record with a positive rate."""
    mine = [r for r in records if r["image"] == image and _positive(r.get("bpp"))]
    return min(mine, key=lambda r: abs(math.log(r["bpp"] / target)), default=None)


def tiles(result: Result, target: float = TARGET_BPP) -> list[Tile]:
    """The original, then the benchmarked family, then each other codec in the tables' order."""
    name = result.picture_image
    if name is None or ("original", 0.0) not in result.kept:
        raise ValueError("the run kept no reconstructions (Settings.picture was off)")
    original = result.kept[("original", 0.0)]
    out = [Tile(f"original\n{original.shape[1]}x{original.shape[0]} ({name})", original)]
    settings = result.settings
    est = " (est.)" if settings.estimate else ""
    rows = [(settings.codec, f"{settings.family.label} q{{q:g}}{est}", result.records)]
    for key, records in result.vs.items():
        c = comparison(key)
        rows.append((key, c.label + (" q{q:g}" if len(c.levels) > 1 else ""), records))
    for key, label, records in rows:
        rec = closest(records, name, target)
        if rec is None:
            continue
        q = float(rec["quality"])
        out.append(Tile(f"{label.format(q=q)}\n{rec['bpp']:.4f} bpp, {rec['psnr-rgb']:.2f} dB",
                        result.kept[(key, q)]))
    return out


def grid(n: int, columns: int = COLUMNS) -> tuple[int, int]:
    """(columns, rows) for ``n`` tiles."""
    cols = max(1, min(columns, n))
    return cols, math.ceil(n / cols)


def side_by_side(tiles: list[Tile], columns: int = COLUMNS) -> Image.Image:
    """The tiles on a white sheet, row by row; columns widen when a label is wider than the image."""
    font = _font()
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    height = max(t.image.shape[0] for t in tiles)
    width = max(max(t.image.shape[1] for t in tiles),
                *(measure.multiline_textbbox((0, 0), t.label, font=font)[2] + 2 * PAD for t in tiles))
    cols, rows = grid(len(tiles), columns)
    sheet = Image.new("RGB", (cols * width + (cols - 1) * GAP, rows * (LABEL_HEIGHT + height) + (rows - 1) * GAP),
                      "white")
    draw = ImageDraw.Draw(sheet)
    for i, t in enumerate(tiles):
        x = (i % cols) * (width + GAP)
        y = (i // cols) * (LABEL_HEIGHT + height + GAP)
        draw.multiline_text((x + PAD, y + PAD), t.label, fill="black", font=font)
        sheet.paste(Image.fromarray(t.image, "RGB"), (x, y + LABEL_HEIGHT))
    return sheet


def write_picture(result: Result, path: str | Path, target: float = TARGET_BPP) -> list[Tile]:
    """Write the picture (format from the extension); the tiles it shows."""
    shown = tiles(result, target)
    sheet = side_by_side(shown)
    fmt = Image.registered_extensions().get(Path(path).suffix.lower(), "PNG")
    atomic_write(path, lambda tmp: sheet.save(tmp, format=fmt), force=True)
    return shown


def _font() -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=FONT_SIZE)
    except TypeError:  # Pillow < 10.1: the fixed bitmap font
        return ImageFont.load_default()


def _positive(v) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v) and v > 0


__all__ = ["TARGET_BPP", "Tile", "closest", "tiles", "grid", "side_by_side", "write_picture"]
