"""Named model configurations of every family, in one registry (``--config`` and the
weights' metadata name them). Each family registers its own, in its module; a
configuration's class says which model it builds and how a checkpoint of it is recognised.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING, ClassVar

from .._lazy import load

if TYPE_CHECKING:
    import torch


class Config:
    """A model's constructor arguments: a frozen dataclass per kind of model, with a ``description``."""

    family: ClassVar[str]  # the kind of model: its family's key, or a training tool's (MRT's tokenizer)
    model: ClassVar[str]  # its class, "module:Class", imported on first use
    # Checkpoints may come in the authors' layout (CompressAI coder tables, h_a/h_s aliases):
    # zoo.checkpoint builds such models by assigning the file's tensors, aliases resolved.
    official_layout: ClassVar[bool] = False

    def kwargs(self) -> dict:
        """The model constructor's keyword arguments (tuples as lists, no description)."""
        d = asdict(self)  # type: ignore[call-overload]
        d.pop("description")
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    def probe(self) -> tuple[str, int]:
        """The first layer's key and its width: a cheap first test of a checkpoint."""
        raise NotImplementedError

    def build(self, rates: int = 0) -> torch.nn.Module:
        """A model of this configuration (``rates``: gain units, for the kinds that have them)."""
        return load(self.model)(**self.kwargs())


CONFIGS: dict[str, Config] = {}


def register_config(name: str, config: Config) -> None:
    CONFIGS[name] = config


def get_config(name: str) -> Config:
    try:
        return CONFIGS[name]
    except KeyError:
        raise KeyError(f"unknown model config {name!r} (known: {', '.join(sorted(CONFIGS))})") from None
