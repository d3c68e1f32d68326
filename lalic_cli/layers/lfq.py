"""Lookup-free quantisation (MAGVIT-v2): every channel becomes one bit, its sign."""

from __future__ import annotations

import torch
import torch.nn as nn


class LFQ(nn.Module):
    """``sign(z)`` in the forward pass, identity gradient (straight-through).

    ``aux_loss`` is MAGVIT-v2's entropy penalty, factorised over bits (a code book of
    2^bits entries cannot be enumerated): confident bits per token, balanced bits over
    the batch, plus a small commitment term pulling ``z`` towards ``+-1``.
    """

    def __init__(self, temperature: float = 0.5):
        super().__init__()
        self.temperature = temperature

    @staticmethod
    def bits(z: torch.Tensor) -> torch.Tensor:
        """The code as 0/1 integers (``z > 0``)."""
        return (z > 0).to(torch.uint8)

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        q = torch.where(z > 0, 1.0, -1.0).to(z.dtype)
        out = z + (q - z).detach()
        if not self.training:
            return out, z.new_zeros(())
        p = torch.sigmoid(2 * z / self.temperature)

        def entropy(prob: torch.Tensor) -> torch.Tensor:
            prob = prob.clamp(1e-6, 1 - 1e-6)
            return -(prob * prob.log() + (1 - prob) * (1 - prob).log())

        per_token = entropy(p).mean()
        batch = entropy(p.reshape(-1, p.shape[-1]).mean(0)).mean()
        commit = (z - q).square().mean()
        return out, per_token - batch + 0.25 * commit
