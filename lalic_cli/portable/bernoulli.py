"""Binary arithmetic coding through CompressAI's rANS with a table of Bernoulli CDFs.

A probability becomes a table index by one multiplication by a power of two and a
floor, both exact, and every table entry is an integer computed in integers: given
bit-identical probabilities (the portable context model), encoder and decoder pick the
same CDFs on every machine.
"""

from __future__ import annotations

import torch

PRECISION = 16  # CompressAI's rANS works with 16-bit CDFs
LEVELS = 256  # probability levels; level k stands for p(1) = (k + 1/2) / LEVELS


def _table() -> list[list[int]]:
    total = 1 << PRECISION
    unit = total // (2 * LEVELS)
    cdfs = []
    for k in range(LEVELS):
        one = (2 * k + 1) * unit  # p(1) * 2^16 exactly
        zero = total - one - 1  # one count is the escape symbol CompressAI's coder reserves
        cdfs.append([0, zero, zero + one, total])
    return cdfs


class BernoulliCoder:
    """Codes 0/1 symbols, each with its own probability level."""

    def __init__(self):
        self.cdfs = _table()
        self.lengths = [4] * LEVELS
        self.offsets = [0] * LEVELS

    @staticmethod
    def levels(p1: torch.Tensor) -> torch.Tensor:
        """Table indexes for probabilities of a 1 (float64 in [0, 1])."""
        return torch.floor(p1.double() * LEVELS).clamp(0, LEVELS - 1).to(torch.int64)

    @staticmethod
    def bits_cost(bits: torch.Tensor, levels: torch.Tensor) -> float:
        """Ideal code length in bits of ``bits`` at these levels (for reports and tests)."""
        p1 = (levels.double() + 0.5) / LEVELS
        p = torch.where(bits.bool(), p1, 1 - p1)
        return float(-torch.log2(p).sum())

    def encode(self, bits: torch.Tensor, levels: torch.Tensor) -> bytes:
        from compressai.ans import RansEncoder

        return RansEncoder().encode_with_indexes(
            bits.reshape(-1).tolist(), levels.reshape(-1).tolist(), self.cdfs, self.lengths, self.offsets
        )

    def decode(self, string: bytes, levels: torch.Tensor) -> torch.Tensor:
        from compressai.ans import RansDecoder

        out = RansDecoder().decode_with_indexes(
            string, levels.reshape(-1).tolist(), self.cdfs, self.lengths, self.offsets
        )
        return torch.tensor(out, dtype=torch.uint8).view(levels.shape)
