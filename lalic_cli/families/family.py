"""A model family's descriptor: what the rest of lalic asks of a family, without torch.

A family says which qualities exist (the bench's default sweep, and what ``-q``, the library
and the Pillow plugin accept), what its ``.lal`` files hold (:class:`Container`), whether the
Kodak anchors (VTM, the LALIC paper) mean anything at its rates, and which other codecs its
bench runs bring along: MRT's points alone say little, so ``--codec mrt`` adds LALIC at its
lowest rate, AVIF at its lowest setting and downscaled AVIF / WebP, measured in the same run.
A given set of weights may code fewer qualities than its family (official checkpoints: one
each; the bundled weights: their ``qualities`` in weights.toml); the weights registry says so
with the same error type.

The heavy parts, its coding plug-in (``coding.Coder``) and its training recipes, are modules
that the descriptor names and imports on first use: the ``lalic`` command and the container
read the registry at start-up, without torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from .._lazy import load
from ..errors import QualityError

if TYPE_CHECKING:
    from ..zoo.registry import WeightsEntry
    from .coding import Coder


@dataclass(frozen=True)
class Container:
    """What the ``.lal`` container stores for a family, and the rules it checks its files
    against on reading and writing (docs/bitstream.md)."""

    code: int  # the header's family byte
    stride: int  # pixels per element of the header's latent grid (z_shape)
    entropy: str | None = None  # the one entropy path its files use; None: either
    z_string: bool = True  # False: its files carry no z string
    fields: tuple[str, str] = ("z_shape", "channel_groups")  # what `lalic info` calls z_shape and num_groups


@dataclass(frozen=True)
class Family:
    key: str  # --codec name, the header's family, and the "codec" of its bench records
    label: str  # name in tables, plots, pictures and messages
    qualities: tuple[float, ...]  # every rate point: the default sweep
    whole_qualities: bool  # MRT's qualities pick a number of coded bits: no fractions
    # VTM / paper curves and BD-rates: MRT's rates (< 0.03 bpp) lie far below the anchors' points,
    # so any BD-rate would be an extrapolation.
    anchors: bool
    container: Container
    coder_module: str  # its coding plug-in (a module, see coding.Coder)
    recipes_module: str | None = None  # its training recipes: a module whose recipes register on import
    refines: bool = False  # --effort above the default refines its latents (Coder.compress_refined)
    comparisons: tuple[str, ...] = ()  # keys of the rows every bench run of this family adds
    bench_rows: tuple[tuple[str, str, float], ...] = ()  # (key, label, quality): rows it lends other runs
    tools: tuple[tuple[str, str], ...] = ()  # (config family, what it is): models it trains that code nothing
    # How many qualities given weights code, where the weights file itself says so (MRT: the
    # config's bit budgets); None: the weights registry decides.
    rate_points: Callable[[WeightsEntry], int] | None = None

    @property
    def coder(self) -> Coder:
        """Its coding plug-in, imported on first use."""
        return load(self.coder_module)

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
        from ..zoo.registry import resolve

        entry = resolve(weights, quality, self.key)
        if self.rate_points is not None:
            n = self.rate_points(entry)
            if quality > n:
                raise QualityError(f"no weights for {self.label} quality {quality:g}: {entry.name} "
                                   f"({entry.config}) codes qualities 1 .. {n}")
        return entry
