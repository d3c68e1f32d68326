"""The one shape every family codes in: what the ``.lal`` container stores of an image.

``codec.py`` asks a family's coding plug-in (a module, :class:`Coder`) to compress a padded
image into :class:`Coded` and to decompress a ``LalFile`` back; it never sees a model's own
``compress`` arguments or return values. No torch here: the container side reads this too.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Protocol

if TYPE_CHECKING:
    import torch

    from ..bitstream import LalFile


@dataclass
class Coded:
    """What a family's compress gives the container."""

    y_strings: list[bytes]  # 2 * num_groups strings
    z_string: bytes
    grid: tuple[int, int]  # the header's z_shape, in units of the family's stride
    num_groups: int
    symbols_crc: int  # CRC32 of the coded symbols, for the decoder to check its own against


class Coder(Protocol):
    """A family's coding plug-in, named by ``Family.coder_module``."""

    def compress(self, model: torch.nn.Module, x: torch.Tensor, quality: float, entropy: str, arithmetic: int) -> Coded:
        """A padded image (a multiple of ``model.downsampling_factor``) in the container's shape;
        ``arithmetic``: that of the exact entropy path (``bitstream.arithmetic_of`` the version)."""

    def decompress(self, model: torch.nn.Module, lal: LalFile) -> tuple[torch.Tensor, int]:
        """The padded image and the CRC32 of the decoded symbols (checked against the header's)."""

    def compress_refined(self, model: torch.nn.Module, entropy: str, arithmetic: int,
                         refined: Callable[[], dict]) -> Coded:
        """Families that refine (``Family.refines``): the latents ``refined()`` optimises, coded."""


def tensor_crc(t: torch.Tensor) -> int:
    """CRC32 of a tensor's bytes, copied to the CPU: the header's symbols check."""
    return zlib.crc32(t.cpu().numpy().tobytes())
