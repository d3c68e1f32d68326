"""``lalic bench``: rate, quality, speed and BD-rates of the codec on a folder of images.

Modules: ``bdrate`` (Bjøntegaard delta rate), ``metrics`` (PSNR, MS-SSIM), ``classical``
(Pillow JPEG / WebP / AVIF for ``--vs``), ``runner`` (the measurements), ``report``
(averages, tables, JSON, CSV, plot) and ``command`` (the click command).
"""

from .bdrate import BDRate, bd_rate
from .command import bench

__all__ = ["BDRate", "bd_rate", "bench"]
