"""Which files are images: by extension, for the folders that training, validation and
``lalic bench`` read (one list, so a folder means the same images to each)."""

from __future__ import annotations

from pathlib import Path

from .errors import InputError

#: what Pillow opens (AVIF and JPEG 2000 where its build has them)
IMAGE_EXTENSIONS = frozenset(
    ".png .jpg .jpeg .jpe .webp .avif .bmp .tif .tiff .ppm .pgm .pnm .pbm .gif .tga .jp2 .j2k".split()
)


def list_images(folder: str | Path, limit: int | None = None) -> list[Path]:
    """Image files (by extension) directly in ``folder``, sorted by name, the first ``limit`` of them.

    A single image file is accepted too.
    """
    folder = Path(folder)
    if folder.is_file():
        return [folder]
    if not folder.is_dir():
        raise InputError(f"{folder}: no such folder")
    files = sorted(
        (p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()),
        key=lambda p: p.name,
    )
    if not files:
        raise InputError(f"{folder}: no image files (PNG, JPEG, WebP, ...) in this folder")
    return files[:limit] if limit else files
