"""``lalic bench``: rate, quality, speed and BD-rates of the codec on a folder of images.

Modules: ``bdrate`` (Bjøntegaard delta rate), ``metrics`` (PSNR, MS-SSIM), ``classical``
(Pillow JPEG / WebP / AVIF for ``--vs``), ``runner`` (the measurements), ``report``
(averages, tables, JSON, CSV, plot) and ``command`` (the click command).

The names below are imported on first use: the ``lalic`` command registers ``bench``
at start-up, and that must not cost numpy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

if TYPE_CHECKING:
    from .bdrate import BDRate, bd_rate
    from .command import bench

_EXPORTS = {"BDRate": ".bdrate", "bd_rate": ".bdrate", "bench": ".command"}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
