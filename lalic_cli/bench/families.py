"""The learned model families the bench runs, and the comparison rows a family's runs add.

A family says which qualities exist (the default sweep, and what ``-q`` accepts), whether the
Kodak anchors (VTM, the LALIC paper) mean anything at its rates, and which other codecs its
runs bring along: MRT's points alone say little, so ``--codec mrt`` adds LALIC at its lowest
rate, AVIF at its lowest setting and downscaled AVIF / WebP, measured in the same run.

Nothing heavy is imported here: the ``lalic`` command reads this registry at start-up.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from ..errors import InputError

if TYPE_CHECKING:
    from ..zoo.registry import WeightsEntry


def _mrt_rate_points(entry: WeightsEntry) -> int:
    from ..models.configs import get_config

    return len(get_config(entry.config).bits)


@dataclass(frozen=True)
class Family:
    key: str  # --codec name, and the "codec" of its records
    label: str  # name in tables, plots and pictures
    qualities: tuple[float, ...]  # every rate point: the default sweep
    whole_qualities: bool  # MRT's qualities pick a number of coded bits: no fractions
    # VTM / paper curves and BD-rates: MRT's rates (< 0.03 bpp) lie far below the anchors' points,
    # so any BD-rate would be an extrapolation.
    anchors: bool
    comparisons: tuple[str, ...] = ()  # keys of the rows every run of this family adds
    # How many qualities given weights code, where the weights file itself says so (MRT: the
    # config's bit budgets); None: the weights registry decides.
    rate_points: Callable[[WeightsEntry], int] | None = None

    def parse_quality(self, text: str) -> float:
        """One ``-q`` value, checked against this family's qualities."""
        span = f"{self.qualities[0]:g} .. {self.qualities[-1]:g}"
        kind = "whole numbers " if self.whole_qualities else ""
        try:
            q = float(text)
        except ValueError:
            raise InputError(f"-q: {text!r} is not a number ({self.label} qualities are {kind}{span})") from None
        if not self.qualities[0] <= q <= self.qualities[-1]:
            raise InputError(f"-q: quality {text} is outside {span} ({self.label})")
        if self.whole_qualities and not q.is_integer():
            raise InputError(f"-q: {self.label} qualities are whole numbers {span} (got {text})")
        return q

    def resolve(self, weights: str | None, quality: float) -> WeightsEntry:
        """The weights that code ``quality``; an error saying why when there are none."""
        from ..zoo.registry import WeightsError, resolve

        entry = resolve(weights, quality, self.key)
        if self.rate_points is not None:
            n = self.rate_points(entry)
            if quality > n:
                raise WeightsError(f"no weights for {self.label} quality {quality:g}: {entry.name} "
                                   f"({entry.config}) codes qualities 1 .. {n}")
        return entry


FAMILIES: dict[str, Family] = {
    f.key: f
    for f in (
        Family("lalic", "LALIC", (1.0, 2.0, 3.0, 4.0, 5.0, 6.0), whole_qualities=False, anchors=True),
        # three rate points: the bundled mrt-small config's bit budgets (tests/test_bench_mrt.py checks)
        Family("mrt", "MRT", (1.0, 2.0, 3.0), whole_qualities=True, anchors=False,
               comparisons=("lalic-q1", "avif-min", "avif-down2", "avif-down4", "webp-down2", "webp-down4"),
               rate_points=_mrt_rate_points),
    )
}


@dataclass(frozen=True)
class LearnedPoint:
    """Another family's model at one quality, default weights: a comparison row."""

    key: str
    label: str
    family: str
    quality: float

    @property
    def levels(self) -> tuple[float, ...]:
        return (self.quality,)

    @property
    def description(self) -> str:
        return f"{FAMILIES[self.family].label} at quality {self.quality:g}, default weights"


#: learned comparison rows, by key (the classical ones are ``classical.CODECS``)
LEARNED: dict[str, LearnedPoint] = {
    p.key: p for p in (LearnedPoint("lalic-q1", "LALIC q1", "lalic", FAMILIES["lalic"].qualities[0]),)
}


__all__ = ["Family", "FAMILIES", "LearnedPoint", "LEARNED"]
