"""Bjøntegaard delta rate between two rate-distortion curves.

The log-rate of each curve is interpolated as a function of quality with a
monotone piecewise-cubic Hermite interpolant (PCHIP), both are integrated
over the quality interval the curves share, and the mean difference of the
log-rates is turned into a percentage: negative means the test curve needs
fewer bits than the anchor for the same quality.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np


@dataclass(frozen=True)
class BDRate:
    """A BD-rate in percent; ``percent`` is NaN when ``reason`` says why it cannot be computed."""

    percent: float
    reason: str | None = None

    def __float__(self) -> float:
        return self.percent

    @property
    def ok(self) -> bool:
        return not math.isnan(self.percent)

    def format(self, digits: int = 2) -> str:
        return f"{self.percent:+.{digits}f}%" if self.ok else "n/a"


def _curve(rate: Sequence[float], quality: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Valid points (finite, positive rate) sorted by quality; equal qualities averaged in log-rate."""
    r = np.asarray(rate, dtype=np.float64).ravel()
    q = np.asarray(quality, dtype=np.float64).ravel()
    if r.shape != q.shape:
        raise ValueError(f"rate and quality have different lengths ({r.size} and {q.size})")
    keep = np.isfinite(r) & np.isfinite(q) & (r > 0)
    log_r, q = np.log(r[keep]), q[keep]
    order = np.argsort(q, kind="stable")
    log_r, q = log_r[order], q[order]
    uq, inverse = np.unique(q, return_inverse=True)
    if uq.size != q.size:
        log_r = np.bincount(inverse, weights=log_r) / np.bincount(inverse)
        q = uq
    return q, log_r


def _mean_log_rate(q: np.ndarray, log_r: np.ndarray, lo: float, hi: float) -> float:
    """Mean of the PCHIP interpolant of log-rate over [lo, hi] (integrated exactly, piece by piece)."""
    from scipy.interpolate import PchipInterpolator

    return float(PchipInterpolator(q, log_r).integrate(lo, hi)) / (hi - lo)


def bd_rate(
    anchor_rate: Sequence[float],
    anchor_quality: Sequence[float],
    test_rate: Sequence[float],
    test_quality: Sequence[float],
) -> BDRate:
    """BD-rate of the test curve against the anchor, in percent.

    Rates must be positive (bpp, bytes, ...); qualities are PSNR, MS-SSIM in dB
    or any measure where higher is better. Points with a non-finite value or a
    non-positive rate are ignored.
    """
    qa, la = _curve(anchor_rate, anchor_quality)
    qt, lt = _curve(test_rate, test_quality)
    if qa.size < 2:
        return BDRate(math.nan, f"the anchor has {qa.size} usable point(s), 2 are needed")
    if qt.size < 2:
        return BDRate(math.nan, f"the test curve has {qt.size} usable point(s), 2 are needed")
    lo, hi = max(qa[0], qt[0]), min(qa[-1], qt[-1])
    if not hi > lo:
        return BDRate(
            math.nan,
            f"quality ranges do not overlap (anchor {qa[0]:.3g}..{qa[-1]:.3g}, test {qt[0]:.3g}..{qt[-1]:.3g})",
        )
    diff = _mean_log_rate(qt, lt, lo, hi) - _mean_log_rate(qa, la, lo, hi)
    return BDRate(100.0 * math.expm1(diff))


def bd_rate_curves(anchor: dict, test: dict, quality_key: str, rate_key: str = "bpp") -> BDRate:
    """:func:`bd_rate` on two ``results``-style dicts (``{"bpp": [...], "psnr-rgb": [...]}``)."""
    for name, d in (("anchor", anchor), ("test curve", test)):
        if quality_key not in d or rate_key not in d:
            return BDRate(math.nan, f"the {name} has no {quality_key!r} points")
    return bd_rate(anchor[rate_key], anchor[quality_key], test[rate_key], test[quality_key])


@dataclass(frozen=True)
class Margin:
    """The test curve's quality at one anchor point's rate, minus the anchor's quality."""

    rate: float
    anchor_quality: float
    test_quality: float

    @property
    def margin(self) -> float:
        return self.test_quality - self.anchor_quality


def quality_margins(
    anchor_rate: Sequence[float],
    anchor_quality: Sequence[float],
    test_rate: Sequence[float],
    test_quality: Sequence[float],
) -> list[Margin]:
    """At every anchor point whose rate lies within the test curve's, the test curve's
    quality there (linear in log-rate between its two neighbouring points) against the
    anchor's. A BD-rate averages over the shared range; these say at which rates a codec
    leads, which "better at every quality" needs. Anchor points outside the range are
    left out rather than extrapolated."""
    r = np.asarray(test_rate, dtype=np.float64).ravel()
    q = np.asarray(test_quality, dtype=np.float64).ravel()
    keep = np.isfinite(r) & np.isfinite(q) & (r > 0)
    r, q = r[keep], q[keep]
    order = np.argsort(r, kind="stable")
    log_r, q = np.log(r[order]), q[order]
    out = []
    if log_r.size < 2:
        return out
    for ra, qa in zip(anchor_rate, anchor_quality):
        if not (math.isfinite(ra) and math.isfinite(qa) and ra > 0):
            continue
        lr = math.log(ra)
        if log_r[0] <= lr <= log_r[-1]:
            out.append(Margin(float(ra), float(qa), float(np.interp(lr, log_r, q))))
    return out
