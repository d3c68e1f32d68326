"""MRT's stage 1 (spec MRT.md B.6): align MRT's quantised codes with a VQ tokenizer's codes.

MRT's encoder, RCM and decoder learn to predict, at each 16x16 patch, the index the
frozen tokenizer gives it (cross-entropy); the context model learns the rate. The
auxiliary head scores MRT's generator input against the tokenizer's decoder input for
each code (negative squared distance, one learned scale), so aligning the codes also
teaches MRT's last projection (``to_grid``) to feed the generator what the tokenizer's
decoder expects; the generator starts as that decoder. Only ``mrt`` is exported.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from ..models.mrt import MRT
from ..models.vq import VQTokenizer


class MrtAligner(nn.Module):
    """``mrt`` trained to predict ``tokenizer.encode(x)``; the tokenizer stays frozen."""

    def __init__(self, mrt: MRT, tokenizer: VQTokenizer):
        super().__init__()
        theirs, ours = tokenizer.decoder.state_dict(), mrt.generator.state_dict()
        if {k: v.shape for k, v in theirs.items()} != {k: v.shape for k, v in ours.items()}:
            raise ValueError("the tokenizer's decoder and MRT's pixel generator differ in layout (gen_dims)")
        mrt.generator.load_state_dict(theirs)
        self.mrt = mrt
        self.tokenizer = tokenizer.requires_grad_(False).eval()
        # at scale 1, predicting a code's decoder input exactly would still leave about
        # 4.5 nats of cross-entropy over 1024 codes: a trained tokenizer's codes lie close together
        self.log_scale = nn.Parameter(torch.tensor(math.log(10.0)))

    def train(self, mode: bool = True) -> MrtAligner:
        super().train(mode)
        self.tokenizer.eval()  # frozen: no codebook restarts, fixed targets
        return self

    def forward(self, x: torch.Tensor, quality: torch.Tensor | float | None = None) -> dict:
        """``logits`` (``B x codes x H/16 x W/16``), ``targets``, the rate terms of
        ``MRT.quantise``; in eval mode also ``x_hat`` through the generator."""
        targets = self.tokenizer.encode(x)
        q = self.mrt.quantise(x, quality)
        grid = self.mrt.decode_grid(q["signs"], q["shape"])
        codes = self.tokenizer.code_features()
        g = grid.permute(0, 2, 3, 1)
        dist = g.square().sum(-1, keepdim=True) - 2 * g @ codes.t() + codes.square().sum(-1)
        out = {"logits": (-self.log_scale.exp() * dist).permute(0, 3, 1, 2), "targets": targets,
               "likelihoods": q["likelihoods"], "lfq_loss": q["lfq_loss"]}
        if not self.training:
            out["x_hat"] = self.mrt.generator(grid)
        return out
