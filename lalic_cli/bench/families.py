"""Comparison rows that other learned families add to a bench run (each family's ``bench_rows``)."""

from __future__ import annotations

from dataclasses import dataclass

from ..families import FAMILIES, Family


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
    key: LearnedPoint(key, label, f.key, quality) for f in FAMILIES.values() for key, label, quality in f.bench_rows
}


__all__ = ["Family", "FAMILIES", "LearnedPoint", "LEARNED"]
