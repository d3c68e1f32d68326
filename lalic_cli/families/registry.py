"""The registry of model families: each registers itself once; everything else looks it up.

Codec, container, command line, weights, training and bench find a family here by its key
(``--codec``, the header's family, the weights' metadata) or by its container code, so none
of them names a family.
"""

from __future__ import annotations

from typing import Callable, Iterator, Mapping, TypeVar

from ..errors import InputError
from .family import Family

T = TypeVar("T")

#: key -> family, in registration order (the order of --codec's choices)
FAMILIES: dict[str, Family] = {}


def register_family(family: Family) -> Family:
    """Add ``family``; its key and container code must be new."""
    if family.key in FAMILIES:
        raise ValueError(f"model family {family.key!r} is registered already")
    taken = family_for_code(family.container.code)
    if taken is not None:
        raise ValueError(f"container code {family.container.code} is {taken.key}'s already")
    FAMILIES[family.key] = family
    return family


def get_family(key: str) -> Family:
    """The family of a ``--codec`` name; an unknown one is the user's mistake."""
    try:
        return FAMILIES[key]
    except KeyError:
        raise InputError(f"unknown codec {key!r} ({', '.join(FAMILIES)})") from None


def family_for_code(code: int) -> Family | None:
    """The family whose files carry ``code`` in the header's family byte."""
    return next((f for f in FAMILIES.values() if f.container.code == code), None)


def tool_description(config_family: str) -> str | None:
    """What a model that codes nothing is (a family's training tool), or None for a codec."""
    return next((what for f in FAMILIES.values() for kind, what in f.tools if kind == config_family), None)


def refines(key: str) -> bool:
    """Whether ``--effort`` above the default refines this family's latents."""
    return key in FAMILIES and FAMILIES[key].refines


def refining_labels() -> str:
    """The families whose latents refinement applies to, for messages."""
    return " / ".join(f.label for f in FAMILIES.values() if f.refines)


class FamilyTable(Mapping[str, T]):
    """Key -> one value of each registered family, read when looked up (the container's tables)."""

    def __init__(self, value: Callable[[Family], T]):
        self._value = value

    def __getitem__(self, key: str) -> T:
        return self._value(FAMILIES[key])

    def __iter__(self) -> Iterator[str]:
        return iter(FAMILIES)

    def __len__(self) -> int:
        return len(FAMILIES)

    def __repr__(self) -> str:
        return repr(dict(self))
