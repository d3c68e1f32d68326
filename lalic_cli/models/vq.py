"""A small f16 VQ autoencoder, the tokenizer of MRT's two-stage training (spec MRT.md B.6).

Its code index at each 16x16 patch is the discrete target MRT's stage 1 learns to
predict, and its decoder is built as MRT's pixel generator (the same class and widths),
so that its weights start MRT's generator.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn

from ..layers.generator import PixelGenerator, ResBlock
from ..layers.vq import VectorQuantizer


def _encoder(dims: Sequence[int], code_dim: int) -> nn.Sequential:
    """The generator's mirror: ``dims`` from full resolution down to 1/16, pixel-unshuffle
    by 2 between them, residual blocks at the two coarsest resolutions."""
    layers: list[nn.Module] = [nn.Conv2d(3, dims[0], 3, padding=1), nn.GELU()]
    for i, (cin, cout) in enumerate(zip(dims[:-1], dims[1:])):
        layers += [nn.PixelUnshuffle(2), nn.Conv2d(4 * cin, cout, 3, padding=1), nn.GELU()]
        if i >= len(dims) - 3:
            layers.append(ResBlock(cout))
    layers.append(nn.Conv2d(dims[-1], code_dim, 1))
    return nn.Sequential(*layers)


class VQTokenizer(nn.Module):
    """Pixels -> a grid of code indices at 1/16 resolution -> pixels.

    ``gen_dims`` are the generator's widths (1/16 .. full resolution), as in ``MrtConfig``.
    Codes are low-dimensional (``code_dim``) and projected to ``gen_dims[0]`` before the
    decoder, so each index stands for one fixed decoder input (``code_features``).
    """

    def __init__(self, gen_dims: Sequence[int] = (96, 64, 32, 24, 16), codes: int = 1024, code_dim: int = 16):
        super().__init__()
        self.encoder = _encoder(list(gen_dims)[::-1], code_dim)
        self.quant = VectorQuantizer(codes, code_dim)
        self.post_quant = nn.Conv2d(code_dim, gen_dims[0], 1)
        self.decoder = PixelGenerator(gen_dims)

    @property
    def downsampling_factor(self) -> int:
        return 16

    def _tokens(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int, int, int]]:
        """Encoder outputs as rows (``(B*h*w) x code_dim``) and ``(B, h, w, code_dim)``."""
        z = self.encoder(x)
        b, c, h, w = z.shape
        return z.permute(0, 2, 3, 1).reshape(-1, c), (b, h, w, c)

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Pixels (a multiple of 16 on each side) -> code indices ``B x H/16 x W/16``."""
        z, (b, h, w, _) = self._tokens(x)
        return self.quant.indices(z).view(b, h, w)

    def code_features(self) -> torch.Tensor:
        """The decoder's input for each code, ``codes x gen_dims[0]``."""
        w = self.post_quant.weight.flatten(1)
        return self.quant.embeddings() @ w.t() + self.post_quant.bias

    def forward(self, x: torch.Tensor) -> dict:
        """Training: ``x_hat``, the ``indices`` and the quantiser's ``vq_loss``."""
        z, (b, h, w, c) = self._tokens(x)
        q = self.quant(z)
        z_q = q["z_q"].view(b, h, w, c).permute(0, 3, 1, 2)
        return {"x_hat": self.decoder(self.post_quant(z_q)), "indices": q["indices"].view(b, h, w),
                "vq_loss": q["loss"]}
