"""Vector quantisation with a learned codebook: the discrete targets of MRT's stage 1."""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F


class VectorQuantizer(nn.Module):
    """Nearest l2-normalised code (cosine similarity), straight-through gradient.

    Unit-length codes and inputs (ViT-VQGAN) keep every code in reach of the encoder's
    outputs, and a code left unused for a while (its ``usage``, an average of its share
    of each batch, falls below ``dead_share`` of a uniform share) restarts at a random
    input of the current batch: codebooks otherwise lose most of their codes early.
    ``loss`` is the codebook term plus ``beta`` times the commitment term (VQ-VAE).
    """

    def __init__(self, codes: int, dim: int, beta: float = 0.25, decay: float = 0.95, dead_share: float = 0.05):
        super().__init__()
        self.codes, self.dim = codes, dim
        self.beta, self.decay, self.dead_share = beta, decay, dead_share
        self.codebook = nn.Parameter(F.normalize(torch.randn(codes, dim), dim=1))
        self.register_buffer("usage", torch.full((codes,), 1.0 / codes))

    def embeddings(self) -> torch.Tensor:
        """The unit-length codes, ``codes x dim``."""
        return F.normalize(self.codebook, dim=1)

    def indices(self, z: torch.Tensor) -> torch.Tensor:
        """``N x dim`` inputs -> index of the nearest code (``N``)."""
        return (F.normalize(z, dim=1) @ self.embeddings().t()).argmax(1)

    def forward(self, z: torch.Tensor) -> dict:
        """``N x dim`` inputs -> ``z_q`` (straight-through), ``indices`` and ``loss``."""
        z = F.normalize(z, dim=1)
        if self.training:  # before the codebook enters the graph: the restart writes in place
            self._restart_dead(z.detach())
        codes = self.embeddings()
        idx = (z @ codes.t()).argmax(1)
        e = codes[idx]
        loss = F.mse_loss(e, z.detach()) + self.beta * F.mse_loss(z, e.detach())
        return {"z_q": z + (e - z).detach(), "indices": idx, "loss": loss}

    @torch.no_grad()
    def _restart_dead(self, z: torch.Tensor) -> None:
        counts = torch.bincount(self.indices(z), minlength=self.codes).float()
        ddp = dist.is_available() and dist.is_initialized()
        if ddp:  # every rank must see the same usage, hence the same dead codes
            dist.all_reduce(counts)
        self.usage.mul_(self.decay).add_(counts / counts.sum(), alpha=1 - self.decay)
        dead = (self.usage < self.dead_share / self.codes).nonzero().squeeze(1)
        if not len(dead):
            return
        # CPU draws from the global generator, which the trainer's checkpoints restore
        pick = torch.randint(z.shape[0], (len(dead),)).to(z.device)
        fresh = z[pick]
        if ddp:
            dist.broadcast(fresh, 0)
        self.codebook[dead] = fresh
        self.usage[dead] = 1.0 / self.codes
