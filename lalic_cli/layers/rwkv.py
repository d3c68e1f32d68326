"""The Bi-RWKV block: spatial mix (BiWKV linear attention) and channel mix.

Blocks take and return ``B x C x H x W`` maps like the convolutions around
them; inside, they work on ``B x T x C`` tokens in raster order (T = H*W).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from ..ops.biwkv import biwkv
from .omnishift import OmniShift

TOKEN_CHUNK = 65536  # tokens per chunk for the channel mix at inference


def _shift_tokens(shift: OmniShift, x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    """Apply the 2-D OmniShift to ``B x T x C`` tokens without leaving token layout.

    The token tensor viewed as ``B x C x H x W`` is channels-last already, so the
    depthwise conv runs without a transpose copy.
    """
    b, t, c = x.shape
    h, w = hw
    out = shift(x.view(b, h, w, c).permute(0, 3, 1, 2))
    return out.permute(0, 2, 3, 1).reshape(b, t, c)


class SpatialMix(nn.Module):
    """Token mixing with a global receptive field at O(T) cost."""

    def __init__(self, dim: int):
        super().__init__()
        self.omni_shift = OmniShift(dim)
        self.key = nn.Linear(dim, dim, bias=False)
        self.value = nn.Linear(dim, dim, bias=False)
        self.receptance = nn.Linear(dim, dim, bias=False)
        self.output = nn.Linear(dim, dim, bias=False)
        self.decay = nn.Parameter(torch.randn(dim))
        self.boost = nn.Parameter(torch.randn(dim))

    def forward(self, x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
        t = x.shape[1]
        x = _shift_tokens(self.omni_shift, x, hw)
        k = self.key(x)
        v = self.value(x)
        sr = torch.sigmoid(self.receptance(x))
        y = biwkv(self.decay / t, self.boost / t, k, v)
        return self.output(sr * y)


class ChannelMix(nn.Module):
    """Gated squared-ReLU feed-forward after an OmniShift."""

    def __init__(self, dim: int, hidden_rate: int = 4):
        super().__init__()
        self.omni_shift = OmniShift(dim)
        self.key = nn.Linear(dim, hidden_rate * dim, bias=False)
        self.receptance = nn.Linear(dim, dim, bias=False)
        self.value = nn.Linear(hidden_rate * dim, dim, bias=False)

    def _mix(self, x: torch.Tensor) -> torch.Tensor:
        kv = self.value(torch.relu(self.key(x)).square())
        return torch.sigmoid(self.receptance(x)) * kv

    def forward(self, x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
        x = _shift_tokens(self.omni_shift, x, hw)
        if torch.is_grad_enabled() or x.shape[1] <= TOKEN_CHUNK:
            return self._mix(x)
        # Inference on large images: the hidden layer is rate x wider than x, so run it
        # token-chunk by chunk. Rows of a matmul are independent: the result is the same.
        return torch.cat([self._mix(c) for c in x.split(TOKEN_CHUNK, dim=1)], dim=1)


class RwkvBlock(nn.Module):
    """Pre-norm residual block: ``x + g1*SpatialMix(LN(x))``, ``x + g2*ChannelMix(LN(x))``."""

    def __init__(self, dim: int, hidden_rate: int = 4):
        super().__init__()
        self.ln1 = nn.LayerNorm(dim)
        self.ln2 = nn.LayerNorm(dim)
        self.att = SpatialMix(dim)
        self.ffn = ChannelMix(dim, hidden_rate)
        self.gamma1 = nn.Parameter(torch.ones(dim))
        self.gamma2 = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        hw = (h, w)
        t = x.flatten(2).transpose(1, 2).contiguous()
        t = t + self.gamma1 * self.att(self.ln1(t), hw)
        t = t + self.gamma2 * self.ffn(self.ln2(t), hw)
        return t.transpose(1, 2).reshape(b, c, h, w)
