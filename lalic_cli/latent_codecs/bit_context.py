"""MRT's 1-D spatial-channel context model (1-D SCCTX) and the coding of LFQ bits.

The bits of every token are split into groups of ``group_bits`` channels, the tokens
into two passes (even, then odd positions). For each (group, pass) a small network
(a linear embedding, a Bi-RWKV block over the whole token sequence, an MLP) reads all
that is decoded so far (+-1 for known bits, 0 for unknown) and predicts p(bit = 1)
for the group's bits of the pass's tokens. A group's networks never see later groups,
so decoding only the first groups (a lower rate) needs nothing else.

Coding runs a portable copy of the networks (``lalic_cli.portable.layers``, in the
arithmetic of the file's format version): the probabilities, hence the CDFs, are the
same bits on every machine and thread count.
"""

from __future__ import annotations

import copy

import torch
import torch.nn as nn

from ..layers.rwkv import RwkvBlock
from ..portable.bernoulli import LEVELS, BernoulliCoder
from ..portable.copies import cached_copy
from ..portable.layers import ARITHMETIC, to_portable

_F64 = torch.float64
_P_MIN = 0.5 / LEVELS  # the coder's least probable level: training sees the rate it will pay


class ContextNet(nn.Module):
    """Known bits of every token -> logits of one group's bits."""

    def __init__(self, bits: int, tokens: int, dim: int, group_bits: int):
        super().__init__()
        self.embed = nn.Linear(bits, dim)
        self.pos = nn.Parameter(torch.zeros(tokens, dim))
        self.body = nn.Sequential(
            RwkvBlock(dim, hidden_rate=2, ndim=1), nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, group_bits)
        )

    def forward(self, known: torch.Tensor) -> torch.Tensor:
        b, t, _ = known.shape
        pos = self.pos.repeat(t // self.pos.shape[0], 1)
        return self.body(self.embed(known) + pos)


class _PortableContextNet(nn.Module):
    def __init__(self, net: ContextNet, arithmetic: int):
        super().__init__()
        self.embed = to_portable(net.embed, arithmetic)
        self.pos = net.pos.detach().to(_F64)
        self.body = to_portable(net.body, arithmetic)

    def forward(self, known: torch.Tensor) -> torch.Tensor:
        t = known.shape[1]
        return self.body(self.embed(known) + self.pos.repeat(t // self.pos.shape[0], 1))


class BitContextCodec(nn.Module):
    """Probabilities, rate and coding of ``B x T x bits`` LFQ codes (T = windows * tokens)."""

    def __init__(self, bits: int, tokens: int, dim: int = 64, group_bits: int = 4):
        super().__init__()
        if bits % group_bits:
            raise ValueError(f"{bits} bits do not split into groups of {group_bits}")
        if tokens % 2:
            raise ValueError("tokens per window must be even (two passes)")
        self.bits, self.tokens, self.group_bits = bits, tokens, group_bits
        self.nets = nn.ModuleList(
            ContextNet(bits, tokens, dim, group_bits) for _ in range(2 * (bits // group_bits))
        )
        self.coder = BernoulliCoder()

    def _known(self, signs: torch.Tensor, group: int, parity: int) -> torch.Tensor:
        """What the decoder knows before (group, pass): earlier groups, and this group's even tokens in pass 1."""
        known = torch.zeros_like(signs)
        lo = group * self.group_bits
        known[..., :lo] = signs[..., :lo]
        if parity:
            known[:, 0::2, lo: lo + self.group_bits] = signs[:, 0::2, lo: lo + self.group_bits]
        return known

    def likelihoods(self, signs: torch.Tensor, groups: torch.Tensor | int) -> torch.Tensor:
        """Training: p(each bit) under the model, ``B x T x bits``; 1 where a bit is not coded.

        ``signs`` are +-1 (0 for bits beyond a sample's rate); ``groups`` is the number of
        coded groups, per sample or for all."""
        b, t, n = signs.shape
        groups = torch.as_tensor(groups, device=signs.device).expand(b)
        out = torch.ones_like(signs)
        for g in range(n // self.group_bits):
            used = groups > g
            if not bool(used.any()):
                break
            lo, hi = g * self.group_bits, (g + 1) * self.group_bits
            for parity in (0, 1):
                logits = self.nets[2 * g + parity](self._known(signs[used], g, parity))
                p1 = torch.sigmoid(logits).clamp(_P_MIN, 1 - _P_MIN)  # the coder's range
                bit = signs[used][..., lo:hi] > 0
                p = torch.where(bit, p1, 1 - p1)[:, parity::2]
                rows = out[used]
                rows[:, parity::2, lo:hi] = p
                out[used] = rows
        return out

    def _portable_nets(self, arithmetic: int) -> nn.ModuleList:
        """The portable copy of the networks in an arithmetic, for the current weights
        (rebuilt when they change)."""
        return cached_copy(self, ("nets", arithmetic), lambda: nn.ModuleList(
            _PortableContextNet(net, arithmetic) for net in copy.deepcopy(self.nets).cpu().eval()
        ))

    def _levels(self, known: torch.Tensor, group: int, parity: int, arithmetic: int) -> torch.Tensor:
        from ..portable import ops

        logits = self._portable_nets(arithmetic)[2 * group + parity](known)
        return self.coder.levels(ops.sigmoid(logits))[:, parity::2]  # the coder's sigmoid: 14 terms

    @torch.no_grad()
    def compress(self, bits: torch.Tensor, groups: int, arithmetic: int = ARITHMETIC) -> list[bytes]:
        """``1 x T x bits`` codes (0/1; only the first ``groups`` groups are coded) -> 2 strings per group."""
        signs = torch.zeros(bits.shape, dtype=_F64)
        n = groups * self.group_bits
        signs[..., :n] = bits[..., :n].cpu().to(_F64) * 2 - 1
        strings = []
        for g in range(groups):
            lo, hi = g * self.group_bits, (g + 1) * self.group_bits
            for parity in (0, 1):
                levels = self._levels(self._known(signs, g, parity), g, parity, arithmetic)
                strings.append(self.coder.encode(bits[:, parity::2, lo:hi].cpu(), levels))
        return strings

    @torch.no_grad()
    def decompress(self, strings: list[bytes], length: int, groups: int, arithmetic: int = ARITHMETIC) -> torch.Tensor:
        """The inverse of ``compress``: ``1 x length x bits`` codes, zeros beyond the coded groups."""
        signs = torch.zeros(1, length, self.bits, dtype=_F64)
        bits = torch.zeros(1, length, self.bits, dtype=torch.uint8)
        for g in range(groups):
            lo, hi = g * self.group_bits, (g + 1) * self.group_bits
            for parity in (0, 1):
                levels = self._levels(self._known(signs, g, parity), g, parity, arithmetic)
                decoded = self.coder.decode(strings[2 * g + parity], levels)
                bits[:, parity::2, lo:hi] = decoded
                signs[:, parity::2, lo:hi] = decoded.to(_F64) * 2 - 1
        return bits
