"""Portable (bit-reproducible) counterparts of the layers on the entropy path.

Each is built from a trained float layer (post-training conversion: weights onto the
integer grid of ``ops.QuantWeight``) and computes its forward pass in float64
on the CPU with the order-independent operators of ``lalic_cli.portable.ops`` and
element-wise IEEE operations only, so encoder and decoder get the same bits on every
machine. See ``docs/portable.md``.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from compressai.layers import CheckerboardMaskedConv2d

from ..layers.entropy_parameters import EntropyParametersBlock
from ..layers.omnishift import OmniShift
from ..layers.rwkv import RwkvBlock
from . import ops

_F64 = torch.float64


def _f64(t: torch.Tensor) -> torch.Tensor:
    return t.detach().cpu().to(_F64)


class PortableConv2d(nn.Module):
    def __init__(self, conv: nn.Conv2d):
        super().__init__()
        weight = conv.weight
        if isinstance(conv, CheckerboardMaskedConv2d):  # the mask is applied in its forward
            weight = weight * conv.mask
        self.w = ops.QuantWeight(weight, conv.bias)
        self.stride, self.padding, self.groups = conv.stride[0], conv.padding[0], conv.groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return ops.conv2d(x, self.w, stride=self.stride, padding=self.padding, groups=self.groups)


class PortableConvTranspose2d(nn.Module):
    def __init__(self, conv: nn.ConvTranspose2d):
        super().__init__()
        self.w = ops.QuantWeight(conv.weight, conv.bias)
        self.stride, self.padding, self.output_padding = conv.stride[0], conv.padding[0], conv.output_padding[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return ops.conv_transpose2d(x, self.w, self.stride, self.padding, self.output_padding)


class PortableLayerNorm(nn.Module):
    def __init__(self, norm: nn.LayerNorm):
        super().__init__()
        self.weight, self.bias, self.eps = _f64(norm.weight), _f64(norm.bias), norm.eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return ops.layer_norm(x, self.weight, self.bias, self.eps)


def _linear(layer: nn.Linear) -> ops.QuantWeight:
    return ops.QuantWeight(layer.weight, layer.bias)


def _shift(shift: OmniShift) -> ops.QuantWeight:
    # the folded kernel: element-wise float32 arithmetic on the stored branches, the
    # same bits everywhere; a 1-D kernel becomes a 1 x 5 one
    w = shift.folded_weight()
    return ops.QuantWeight(w if shift.ndim == 2 else w.unsqueeze(2))


def _shift_tokens(w: ops.QuantWeight, x: torch.Tensor, hw: tuple[int, int] | None) -> torch.Tensor:
    b, t, c = x.shape
    if hw is None:  # a sequence: a 1 x T map, zero-padded along T only
        m = ops.conv2d(F.pad(x.transpose(1, 2), (2, 2)).unsqueeze(2), w, groups=c)
    else:
        m = ops.conv2d(x.transpose(1, 2).reshape(b, c, *hw), w, padding=2, groups=c)
    return m.reshape(b, c, t).transpose(1, 2)


def _relu_square(x: torch.Tensor) -> torch.Tensor:
    r = x.clamp_min(0)
    return r.mul_(r)


class PortableRwkvBlock(nn.Module):
    """``x + g1 * SpatialMix(LN(x))``, ``x + g2 * ChannelMix(LN(x))`` as in ``RwkvBlock``."""

    def __init__(self, block: RwkvBlock):
        super().__init__()
        att, ffn = block.att, block.ffn
        self.ndim = block.ndim
        self.ln1, self.ln2 = PortableLayerNorm(block.ln1), PortableLayerNorm(block.ln2)
        self.att_shift, self.ffn_shift = _shift(att.omni_shift), _shift(ffn.omni_shift)
        self.att_kvr = ops.QuantStack([_linear(att.key), _linear(att.value), _linear(att.receptance)])
        self.att_output = _linear(att.output)
        self.decay, self.boost = _f64(att.decay), _f64(att.boost)
        self.ffn_kr = ops.QuantStack([_linear(ffn.key), _linear(ffn.receptance)])
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
        k, v, r = ops.linear_many(s, self.att_kvr)
        y = ops.biwkv(self.decay / n, self.boost / n, k, v)
        t = t + self.gamma1 * ops.linear(ops.sigmoid(r) * y, self.att_output)
        s = _shift_tokens(self.ffn_shift, self.ln2(t), hw)
        k, r = ops.linear_many(s, self.ffn_kr)
        kv = ops.linear(_relu_square(k), self.ffn_value)
        return t + self.gamma2 * (ops.sigmoid(r) * kv)


class PortableLinear(nn.Module):
    def __init__(self, layer: nn.Linear):
        super().__init__()
        self.w = _linear(layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return ops.linear(x.to(_F64), self.w)


class PortableReLU(nn.Module):
    """ReLU is portable already (a comparison); this only moves the input to float64."""

    def __init__(self, _relu: nn.ReLU):
        super().__init__()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.to(_F64).clamp_min(0)


class PortableEntropyParametersBlock(nn.Module):
    def __init__(self, block: EntropyParametersBlock):
        super().__init__()
        self.mix = PortableConv2d(block.mix)
        self.norm = PortableLayerNorm(block.norm)
        self.kr = ops.QuantStack([_linear(block.key), _linear(block.receptance)])
        self.value = _linear(block.value)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.mix(x)
        t = self.norm(x.permute(0, 2, 3, 1))
        k, r = ops.linear_many(t, self.kr)
        kv = ops.linear(_relu_square(k), self.value)
        out = ops.sigmoid(r) * kv
        return x + out.permute(0, 3, 1, 2)


_CONVERTERS: dict[type, type] = {
    RwkvBlock: PortableRwkvBlock,
    EntropyParametersBlock: PortableEntropyParametersBlock,
    CheckerboardMaskedConv2d: PortableConv2d,
    nn.Conv2d: PortableConv2d,
    nn.ConvTranspose2d: PortableConvTranspose2d,
    nn.Linear: PortableLinear,
    nn.ReLU: PortableReLU,
}


def to_portable(module: nn.Module) -> nn.Module:
    """The portable counterpart of a layer or of a Sequential of layers (identities kept)."""
    if isinstance(module, nn.Sequential):
        return nn.Sequential(*(to_portable(m) for m in module))
    if isinstance(module, nn.Identity):
        return module
    for kind in type(module).__mro__:
        if kind in _CONVERTERS:
            return _CONVERTERS[kind](module)
    raise TypeError(f"no portable counterpart for {type(module).__name__}")
