"""Parameter-aggregation block of the RWKV-SCCTX entropy model."""

from __future__ import annotations

import torch
import torch.nn as nn


class EntropyParametersBlock(nn.Module):
    """1x1 ``mix`` to the output width, then a residual gated squared-ReLU channel mix.

    Accepts and ignores conv keyword arguments (``kernel_size`` ...) so that
    CompressAI's ``sequential_channel_ramp`` can build a stack of these.
    """

    def __init__(self, in_ch: int, out_ch: int, expansion: int = 2, **_conv_kwargs):
        super().__init__()
        hidden = int(expansion * out_ch)
        self.mix = nn.Conv2d(in_ch, out_ch, 1)
        self.norm = nn.LayerNorm(out_ch)
        self.key = nn.Linear(out_ch, hidden, bias=False)
        self.value = nn.Linear(hidden, out_ch, bias=False)
        self.receptance = nn.Linear(out_ch, out_ch, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.mix(x)
        t = self.norm(x.permute(0, 2, 3, 1))
        kv = self.value(torch.relu(self.key(t)).square())
        out = torch.sigmoid(self.receptance(t)) * kv
        return x + out.permute(0, 3, 1, 2)
