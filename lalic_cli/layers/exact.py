"""Exact (bit-reproducible) counterparts of the layers on the entropy path.

Each is built from a trained float layer (post-training conversion: weights onto the
integer grid of ``ops.exact.QuantWeight``) and computes its forward pass in float64
on the CPU with the order-independent operators of ``lalic_cli.ops.exact`` and
element-wise IEEE operations only, so encoder and decoder get the same bits on every
machine. See ``docs/portable.md``.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from compressai.layers import CheckerboardMaskedConv2d

from ..ops import exact
from .entropy_parameters import EntropyParametersBlock
from .omnishift import OmniShift
from .rwkv import RwkvBlock

_F64 = torch.float64


def _f64(t: torch.Tensor) -> torch.Tensor:
    return t.detach().cpu().to(_F64)


class ExactConv2d(nn.Module):
    def __init__(self, conv: nn.Conv2d):
        super().__init__()
        weight = conv.weight
        if isinstance(conv, CheckerboardMaskedConv2d):  # the mask is applied in its forward
            weight = weight * conv.mask
        self.w = exact.QuantWeight(weight, conv.bias)
        self.stride, self.padding, self.groups = conv.stride[0], conv.padding[0], conv.groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return exact.conv2d(x, self.w, stride=self.stride, padding=self.padding, groups=self.groups)


class ExactConvTranspose2d(nn.Module):
    def __init__(self, conv: nn.ConvTranspose2d):
        super().__init__()
        self.w = exact.QuantWeight(conv.weight, conv.bias)
        self.stride, self.padding, self.output_padding = conv.stride[0], conv.padding[0], conv.output_padding[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return exact.conv_transpose2d(x, self.w, self.stride, self.padding, self.output_padding)


class ExactLayerNorm(nn.Module):
    def __init__(self, norm: nn.LayerNorm):
        super().__init__()
        self.weight, self.bias, self.eps = _f64(norm.weight), _f64(norm.bias), norm.eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return exact.layer_norm(x, self.weight, self.bias, self.eps)


def _linear(layer: nn.Linear) -> exact.QuantWeight:
    return exact.QuantWeight(layer.weight, layer.bias)


def _shift(shift: OmniShift) -> exact.QuantWeight:
    # the folded kernel: element-wise float32 arithmetic on the stored branches, the
    # same bits everywhere; a 1-D kernel becomes a 1 x 5 one
    w = shift.folded_weight()
    return exact.QuantWeight(w if shift.ndim == 2 else w.unsqueeze(2))


def _shift_tokens(w: exact.QuantWeight, x: torch.Tensor, hw: tuple[int, int] | None) -> torch.Tensor:
    b, t, c = x.shape
    if hw is None:  # a sequence: a 1 x T map, zero-padded along T only
        m = exact.conv2d(F.pad(x.transpose(1, 2), (2, 2)).unsqueeze(2), w, groups=c)
    else:
        m = exact.conv2d(x.transpose(1, 2).reshape(b, c, *hw), w, padding=2, groups=c)
    return m.reshape(b, c, t).transpose(1, 2)


def _relu_square(x: torch.Tensor) -> torch.Tensor:
    r = x.clamp_min(0)
    return r.mul_(r)


class ExactRwkvBlock(nn.Module):
    """``x + g1 * SpatialMix(LN(x))``, ``x + g2 * ChannelMix(LN(x))`` as in ``RwkvBlock``."""

    def __init__(self, block: RwkvBlock):
        super().__init__()
        att, ffn = block.att, block.ffn
        self.ndim = block.ndim
        self.ln1, self.ln2 = ExactLayerNorm(block.ln1), ExactLayerNorm(block.ln2)
        self.att_shift, self.ffn_shift = _shift(att.omni_shift), _shift(ffn.omni_shift)
        self.att_kvr = exact.QuantStack([_linear(att.key), _linear(att.value), _linear(att.receptance)])
        self.att_output = _linear(att.output)
        self.decay, self.boost = _f64(att.decay), _f64(att.boost)
        self.ffn_kr = exact.QuantStack([_linear(ffn.key), _linear(ffn.receptance)])
        self.ffn_value = _linear(ffn.value)
        self.gamma1, self.gamma2 = _f64(block.gamma1), _f64(block.gamma2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.ndim == 1:
            return self.tokens(x.to(_F64), None)
        b, c, h, w = x.shape
        t = x.to(_F64).permute(0, 2, 3, 1).reshape(b, h * w, c)
        return self.tokens(t, (h, w)).reshape(b, h, w, c).permute(0, 3, 1, 2)

    def tokens(self, t: torch.Tensor, hw: tuple[int, int] | None) -> torch.Tensor:
        n = t.shape[1]
        s = _shift_tokens(self.att_shift, self.ln1(t), hw)
        k, v, r = exact.linear_many(s, self.att_kvr)
        y = exact.biwkv(self.decay / n, self.boost / n, k, v)
        t = t + self.gamma1 * exact.linear(exact.sigmoid(r) * y, self.att_output)
        s = _shift_tokens(self.ffn_shift, self.ln2(t), hw)
        k, r = exact.linear_many(s, self.ffn_kr)
        kv = exact.linear(_relu_square(k), self.ffn_value)
        return t + self.gamma2 * (exact.sigmoid(r) * kv)


class ExactLinear(nn.Module):
    def __init__(self, layer: nn.Linear):
        super().__init__()
        self.w = _linear(layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return exact.linear(x.to(_F64), self.w)


class ExactReLU(nn.Module):
    """ReLU is exact already (a comparison); this only moves the input to float64."""

    def __init__(self, _relu: nn.ReLU):
        super().__init__()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.to(_F64).clamp_min(0)


class ExactEntropyParametersBlock(nn.Module):
    def __init__(self, block: EntropyParametersBlock):
        super().__init__()
        self.mix = ExactConv2d(block.mix)
        self.norm = ExactLayerNorm(block.norm)
        self.kr = exact.QuantStack([_linear(block.key), _linear(block.receptance)])
        self.value = _linear(block.value)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.mix(x)
        t = self.norm(x.permute(0, 2, 3, 1))
        k, r = exact.linear_many(t, self.kr)
        kv = exact.linear(_relu_square(k), self.value)
        out = exact.sigmoid(r) * kv
        return x + out.permute(0, 3, 1, 2)


_CONVERTERS: dict[type, type] = {
    RwkvBlock: ExactRwkvBlock,
    EntropyParametersBlock: ExactEntropyParametersBlock,
    CheckerboardMaskedConv2d: ExactConv2d,
    nn.Conv2d: ExactConv2d,
    nn.ConvTranspose2d: ExactConvTranspose2d,
    nn.Linear: ExactLinear,
    nn.ReLU: ExactReLU,
}


def to_exact(module: nn.Module) -> nn.Module:
    """The exact counterpart of a layer or of a Sequential of layers (identities kept)."""
    if isinstance(module, nn.Sequential):
        return nn.Sequential(*(to_exact(m) for m in module))
    if isinstance(module, nn.Identity):
        return module
    for kind in type(module).__mro__:
        if kind in _CONVERTERS:
            return _CONVERTERS[kind](module)
    raise TypeError(f"no exact counterpart for {type(module).__name__}")
