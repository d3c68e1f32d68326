"""MRT (Liu et al., 2025): an image as a short 1-D sequence of bit tokens, for extreme rates.

Shapes follow ``shared/spec/MRT.md`` part B. The image is cut into ``window``-pixel
windows; inside each, 16x16 patches become tokens, and ``tokens`` learned latent
tokens join them. Transformer blocks mix the tokens of one window; Bi-RWKV blocks
(LALIC's, in 1-D) mix the latent tokens of all windows as one sequence (windows in
raster order); each latent token starts from the mean of its block of patches. The RCM maps each latent token to ``max(bits)`` LFQ bits; a quality
codes the first ``bits[q-1]`` of them (one model, three rates). The decoder mirrors
the encoder from the bits and mask tokens to a 1/16 feature grid, and the pixel
generator turns that into pixels.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..latent_codecs import BitContextCodec
from ..layers.generator import PixelGenerator
from ..layers.lfq import LFQ
from ..layers.rwkv import RwkvBlock
from ..layers.transformer import TransformerBlock
from ..portable.layers import ARITHMETIC

PATCH = 16


def _mlp(cin: int, cout: int, hidden: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(cin, hidden), nn.GELU(), nn.Linear(hidden, cout))


def to_windows(grid: torch.Tensor, side: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """``B x C x H x W`` patch grid -> ``(B * windows) x side^2 x C``, windows in raster order."""
    b, c, h, w = grid.shape
    rows, cols = h // side, w // side
    t = grid.view(b, c, rows, side, cols, side).permute(0, 2, 4, 3, 5, 1)
    return t.reshape(b * rows * cols, side * side, c), (rows, cols)


def from_windows(t: torch.Tensor, shape: tuple[int, int], side: int) -> torch.Tensor:
    rows, cols = shape
    n, _, c = t.shape
    b = n // (rows * cols)
    grid = t.view(b, rows, cols, side, side, c).permute(0, 5, 1, 3, 2, 4)
    return grid.reshape(b, c, rows * side, cols * side)


class MixedBlocks(nn.Module):
    """Alternating window Transformer blocks and cross-window Bi-RWKV blocks."""

    def __init__(self, dim: int, depth: int, heads: int, latent_first: bool):
        super().__init__()
        self.attn = nn.ModuleList(TransformerBlock(dim, heads) for _ in range(depth))
        self.rwkv = nn.ModuleList(RwkvBlock(dim, hidden_rate=2, ndim=1) for _ in range(depth))
        self.latent_first = latent_first

    def forward(self, latent: torch.Tensor, patches: torch.Tensor, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``latent``: (B*windows) x K x D, ``patches``: (B*windows) x P x D."""
        n, k, d = latent.shape
        for attn, rwkv in zip(self.attn, self.rwkv):
            if self.latent_first:
                latent = rwkv(latent.reshape(batch, -1, d)).reshape(n, k, d)
            x = attn(torch.cat([latent, patches], 1))
            latent, patches = x[:, :k], x[:, k:]
            if not self.latent_first:
                latent = rwkv(latent.reshape(batch, -1, d)).reshape(n, k, d)
        return latent, patches


class MRT(nn.Module):
    """``forward`` for training, ``compress``/``decompress`` for coding, as LALIC has them.

    Inputs must be padded to a multiple of ``window`` (``downsampling_factor``).
    """

    def __init__(
        self,
        dim: int = 96,
        tokens: int = 64,
        bits: Sequence[int] = (8, 16, 24),
        depth: int = 2,
        heads: int = 4,
        window: int = 256,
        group_bits: int = 4,
        ctx_dim: int = 64,
        gen_dims: Sequence[int] = (96, 64, 32, 24, 16),
    ):
        super().__init__()
        if window % PATCH:
            raise ValueError(f"window {window} is not a multiple of the {PATCH}-pixel patch")
        self.dim, self.tokens, self.window = dim, tokens, window
        self.rate_bits = tuple(bits)
        self.side = window // PATCH
        self.grid = math.isqrt(tokens)
        if self.grid**2 != tokens or self.side % self.grid:
            raise ValueError(f"{tokens} tokens per window: need a square number dividing the {self.side}^2 patches")
        self.pool = self.side // self.grid
        nbits = max(bits)
        patches = self.side * self.side
        self.patch_embed = nn.Conv2d(3, dim, PATCH, stride=PATCH)
        self.patch_pos = nn.Parameter(torch.randn(patches, dim) * 0.02)
        self.latent_tokens = nn.Parameter(torch.randn(tokens, dim) * 0.02)
        self.g_a = MixedBlocks(dim, depth, heads, latent_first=False)
        self.g_a_norm = nn.LayerNorm(dim)
        self.down = _mlp(dim, nbits, dim)
        # Codes normalised per bit over the batch: without it, training drove every bit of
        # every token to one constant value within 200 steps (measured), a stable point
        # that neither the distortion nor MAGVIT-v2's entropy penalty left.
        self.code_norm = nn.BatchNorm1d(nbits, affine=False)
        self.lfq = LFQ()
        self.up = _mlp(nbits, dim, dim)
        self.latent_codec = BitContextCodec(nbits, tokens, ctx_dim, group_bits)
        self.mask_tokens = nn.Parameter(torch.randn(patches, dim) * 0.02)
        self.g_s = MixedBlocks(dim, depth, heads, latent_first=True)
        self.g_s_norm = nn.LayerNorm(dim)
        self.to_grid = nn.Linear(dim, gen_dims[0])
        self.generator = PixelGenerator(gen_dims)

    @property
    def downsampling_factor(self) -> int:
        return self.window

    @property
    def peak_floats_per_pixel(self) -> float:
        """Floats per padded pixel at the memory peak: the generator's full-size maps
        (its last width, pixel-shuffled from four times that at half size), twice over."""
        return 2.0 * 4 * self.generator.layers[-1].in_channels

    def bits_for(self, quality: float) -> int:
        """Bits per token coded at a quality (1, 2, ... as many as ``rate_bits``)."""
        q = float(quality)
        if not q.is_integer() or not 1 <= q <= len(self.rate_bits):
            raise ValueError(f"MRT qualities are 1..{len(self.rate_bits)} (got {quality:g})")
        return self.rate_bits[int(q) - 1]

    def groups_for(self, quality: float) -> int:
        return self.bits_for(quality) // self.latent_codec.group_bits

    def encode_latent(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """Pixels -> pre-quantisation codes ``B x (windows*K) x bits`` and the window grid."""
        b = x.shape[0]
        grid = self.patch_embed(x)
        patches, shape = to_windows(grid, self.side)
        # Each latent token starts from the mean of its block of patches (raster order): a
        # local start that attention then widens. From learned tokens alone, the first
        # thousand CPU steps carried little more than each window's mean colour (measured).
        pooled, _ = to_windows(F.avg_pool2d(grid, self.pool), self.grid)
        latent = self.latent_tokens + pooled
        latent, _ = self.g_a(latent, patches + self.patch_pos, b)
        z = self.down(self.g_a_norm(latent))
        z = self.code_norm(z.reshape(-1, z.shape[-1]))
        return z.reshape(b, -1, z.shape[-1]), shape

    def decode_grid(self, signs: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
        """+-1 codes (0 for bits not coded) ``B x (windows*K) x bits`` -> the generator's
        input, ``B x gen_dims[0] x H/16 x W/16``."""
        b = signs.shape[0]
        latent = self.up(signs).reshape(-1, self.tokens, self.dim)
        # mask tokens start from their latent token, repeated over its block (mirror of g_a)
        spread = F.interpolate(from_windows(latent, shape, self.grid), scale_factor=self.pool, mode="nearest")
        patches = self.mask_tokens + to_windows(spread, self.side)[0]
        _, patches = self.g_s(latent, patches, b)
        return from_windows(self.to_grid(self.g_s_norm(patches)), shape, self.side)

    def decode_latent(self, signs: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
        """+-1 codes (0 for bits not coded) ``B x (windows*K) x bits`` -> pixels."""
        return self.generator(self.decode_grid(signs, shape))

    def quantise(self, x: torch.Tensor, quality: torch.Tensor | float | None = None) -> dict:
        """Training up to the decoder: the kept ``signs``, the window ``shape``, per-bit
        ``likelihoods`` (1 where not coded) and the LFQ penalty (``lfq_loss``).

        ``quality`` (per sample or for all) picks how many bits are kept; default: all."""
        z, shape = self.encode_latent(x)
        signs, penalty = self.lfq(z)
        b, _, nbits = z.shape
        if quality is None:
            kept = torch.full((b,), nbits, device=x.device)
        else:
            table = torch.tensor(self.rate_bits, device=x.device)
            kept = table[torch.as_tensor(quality, device=x.device).long().expand(b) - 1]
        mask = (torch.arange(nbits, device=x.device) < kept[:, None]).to(signs.dtype)[:, None, :]
        signs = signs * mask
        # The rate trains the context model only: its gradient on the codes would pull every
        # bit towards what the context predicts, and the codes collapse to a constant (measured).
        # The token budget bounds the rate anyway.
        likelihoods = self.latent_codec.likelihoods(signs.detach(), kept // self.latent_codec.group_bits)
        return {"signs": signs, "shape": shape, "likelihoods": likelihoods, "lfq_loss": penalty}

    def forward(self, x: torch.Tensor, quality: torch.Tensor | float | None = None) -> dict:
        """Training: ``x_hat``, per-bit ``likelihoods`` (1 where not coded) and the LFQ penalty."""
        q = self.quantise(x, quality)
        return {"x_hat": self.decode_latent(q["signs"], q["shape"]), "likelihoods": q["likelihoods"],
                "lfq_loss": q["lfq_loss"]}

    @property
    def max_quality(self) -> int:
        """One quality per bit budget."""
        return len(self.rate_bits)

    @torch.no_grad()
    def compress(self, x: torch.Tensor, quality: float, arithmetic: int = ARITHMETIC) -> dict:
        """One padded image -> ``2 * groups`` strings, the window grid and the coded bits;
        ``arithmetic``: that of the portable context networks (``portable.layers``)."""
        if x.shape[0] != 1:
            raise ValueError("MRT codes one image at a time")
        groups = self.groups_for(quality)
        z, shape = self.encode_latent(x)
        bits = LFQ.bits(z)
        bits[..., groups * self.latent_codec.group_bits:] = 0
        return {"strings": self.latent_codec.compress(bits, groups, arithmetic), "shape": shape, "bits": bits}

    @torch.no_grad()
    def decompress(self, strings: list[bytes], shape: tuple[int, int], quality: float,
                   arithmetic: int = ARITHMETIC) -> dict:
        groups = self.groups_for(quality)
        if len(strings) != 2 * groups:
            raise ValueError(f"{len(strings)} strings for {groups} bit groups")
        length = shape[0] * shape[1] * self.tokens
        bits = self.latent_codec.decompress(strings, length, groups, arithmetic)
        n = groups * self.latent_codec.group_bits
        signs = torch.zeros(bits.shape, dtype=torch.float32)
        signs[..., :n] = bits[..., :n].float() * 2 - 1
        device = next(self.parameters()).device
        return {"x_hat": self.decode_latent(signs.to(device), shape).clamp(0, 1), "bits": bits}
