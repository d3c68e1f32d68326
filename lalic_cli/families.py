"""The learned model families: which qualities each codes, and how a quality is checked.

A family says which qualities exist (the bench's default sweep, and what ``-q``, the library
and the Pillow plugin accept), whether the Kodak anchors (VTM, the LALIC paper) mean anything
at its rates, and which other codecs its bench runs bring along: MRT's points alone say
little, so ``--codec mrt`` adds LALIC at its lowest rate, AVIF at its lowest setting and
downscaled AVIF / WebP, measured in the same run. A given set of weights may code fewer
qualities than its family (official checkpoints: one each; the bundled weights: their
``qualities`` in weights.toml); the weights registry says so with the same error type.

Nothing heavy is imported here: the ``lalic`` command reads this registry at start-up.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from .errors import QualityError

if TYPE_CHECKING:
    from .zoo.registry import WeightsEntry


def _mrt_rate_points(entry: WeightsEntry) -> int:
    from .models.configs import get_config

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

    def parse_quality(self, value: object) -> float:
        """A quality (number or text), checked against this family's qualities."""
        span = f"{self.qualities[0]:g} .. {self.qualities[-1]:g}"
        kind = "whole numbers " if self.whole_qualities else ""
        try:
            if isinstance(value, bool):
                raise ValueError
            q = float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise QualityError(f"quality {value!r} is not a number ({self.label} qualities are {kind}{span})") from None
        if not self.qualities[0] <= q <= self.qualities[-1]:
            raise QualityError(f"quality {q:g} is outside {span} ({self.label})")
        if self.whole_qualities and not q.is_integer():
            raise QualityError(f"{self.label} qualities are whole numbers {span} (got {q:g})")
        return q

    def resolve(self, weights: str | None, quality: float) -> WeightsEntry:
        """The weights that code ``quality``; an error saying why when there are none."""
        from .zoo.registry import resolve

        entry = resolve(weights, quality, self.key)
        if self.rate_points is not None:
            n = self.rate_points(entry)
            if quality > n:
                raise QualityError(f"no weights for {self.label} quality {quality:g}: {entry.name} "
                                   f"({entry.config}) codes qualities 1 .. {n}")
        return entry


FAMILIES: dict[str, Family] = {
    f.key: f
    for f in (
        # q1..q6: the official lambdas; q7, q8: the ladder continued (models/rates.py) for
        # variable-rate weights trained that far
        Family("lalic", "LALIC", (1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0), whole_qualities=False, anchors=True),
        # three rate points: the bundled mrt-small config's bit budgets (tests/test_bench_mrt.py checks)
        Family("mrt", "MRT", (1.0, 2.0, 3.0), whole_qualities=True, anchors=False,
               comparisons=("lalic-q1", "avif-min", "avif-down2", "avif-down4", "webp-down2", "webp-down4"),
               rate_points=_mrt_rate_points),
    )
}


__all__ = ["Family", "FAMILIES"]
