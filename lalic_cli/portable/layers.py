"""Portable (bit-reproducible) counterparts of the layers on the entropy path.

Each is built from a trained float layer (post-training conversion: weights onto an
integer grid) and computes its forward pass in float64 on the CPU with order-independent
operators and element-wise IEEE operations only, so encoder and decoder get the same
bits on every machine. Two arithmetics multiply (``docs/portable.md``): 1, the float64
grid of ``lalic_cli.portable.ops`` (files up to format version 3), and 2, the int32 sums
of ``lalic_cli.portable.int_ops`` (from version 4, :data:`ARITHMETIC`); a file's version
says which one decodes it.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from compressai.layers import CheckerboardMaskedConv2d

from ..layers.entropy_parameters import EntropyParametersBlock
from ..layers.omnishift import OmniShift
from ..layers.rwkv import RwkvBlock
from . import int_ops, ops

_F64 = torch.float64
ARITHMETIC = 2  # what new files use


class _Grid64:
    """Arithmetic 1: one exponent per tensor, 22-bit activations, 17-bit weights, float64
    sums (``ops``); a ReLU^2 runs after the layer."""

    def weight(self, w: torch.Tensor, bias: torch.Tensor | None = None, out_dim: int = 0) -> ops.QuantWeight:
        return ops.QuantWeight(w, bias)

    def stack(self, weights: list[ops.QuantWeight]) -> ops.QuantStack:
        return ops.QuantStack(weights)

    def linear(self, x: torch.Tensor, w: ops.QuantWeight, relu_square: bool = False) -> torch.Tensor:
        y = ops.linear(x, w)
        return ops.relu_square(y) if relu_square else y

    def linear_many(self, x: torch.Tensor, stack: ops.QuantStack, relu_square: tuple[bool, ...]) -> list[torch.Tensor]:
        return [ops.relu_square(y) if sq else y for y, sq in zip(ops.linear_many(x, stack), relu_square)]

    def conv2d(self, x: torch.Tensor, w: ops.QuantWeight, stride: int, padding: int, groups: int) -> torch.Tensor:
        return ops.conv2d(x, w, stride=stride, padding=padding, groups=groups)

    def conv_transpose2d(self, x: torch.Tensor, w: ops.QuantWeight, stride: int, padding: int,
                         output_padding: int) -> torch.Tensor:
        return ops.conv_transpose2d(x, w, stride, padding, output_padding)

    def shift_weight(self, shift: OmniShift) -> ops.QuantWeight:
        # the folded kernel: element-wise float32 arithmetic on the stored branches, the
        # same bits everywhere; a 1-D kernel becomes a 1 x 5 one
        w = shift.folded_weight()
        return ops.QuantWeight(w if shift.ndim == 2 else w.unsqueeze(2))

    def shift(self, w: ops.QuantWeight, x: torch.Tensor, hw: tuple[int, int] | None) -> torch.Tensor:
        b, t, c = x.shape
        if hw is None:  # a sequence: a 1 x T map, zero-padded along T only
            m = ops.conv2d(F.pad(x.transpose(1, 2), (2, 2)).unsqueeze(2), w, groups=c)
        else:
            m = ops.conv2d(x.transpose(1, 2).reshape(b, c, *hw), w, padding=2, groups=c)
        return m.reshape(b, c, t).transpose(1, 2)


class _Int32:
    """Arithmetic 2: 15-bit integers with int32 sums (``int_ops``), the OmniShift in float64
    in a fixed order; a ReLU^2 is fused into the layer before it."""

    def weight(self, w: torch.Tensor, bias: torch.Tensor | None = None, out_dim: int = 0) -> int_ops.IntWeight:
        return int_ops.IntWeight(w, bias, out_dim)

    def stack(self, weights: list[int_ops.IntWeight]) -> int_ops.IntStack:
        return int_ops.IntStack(weights)

    def linear(self, x: torch.Tensor, w: int_ops.IntWeight, relu_square: bool = False) -> torch.Tensor:
        return int_ops.linear(x, w, "relu_square" if relu_square else "none")

    def linear_many(self, x: torch.Tensor, stack: int_ops.IntStack, relu_square: tuple[bool, ...]) -> list[torch.Tensor]:
        return int_ops.linear_many(x, stack, tuple("relu_square" if sq else "none" for sq in relu_square))

    def conv2d(self, x: torch.Tensor, w: int_ops.IntWeight, stride: int, padding: int, groups: int) -> torch.Tensor:
        if groups != 1:
            raise ValueError("arithmetic 2 has no grouped convolutions (OmniShift has its own operator)")
        return int_ops.conv2d(x, w, stride, padding)

    def conv_transpose2d(self, x: torch.Tensor, w: int_ops.IntWeight, stride: int, padding: int,
                         output_padding: int) -> torch.Tensor:
        return int_ops.conv_transpose2d(x, w, stride, padding, output_padding)

    def shift_weight(self, shift: OmniShift) -> torch.Tensor:
        w = shift.folded_weight().detach().cpu().to(_F64)  # C x 1 x 5 x 5, or C x 1 x 5 for 1-D
        return w[:, 0] if shift.ndim == 2 else w

    def shift(self, w: torch.Tensor, x: torch.Tensor, hw: tuple[int, int] | None) -> torch.Tensor:
        return int_ops.shift(x, w, hw)


ARITHMETICS: dict[int, Any] = {1: _Grid64(), 2: _Int32()}


def _arithmetic(version: int) -> Any:
    if version not in ARITHMETICS:
        raise ValueError(f"unknown portable arithmetic {version}")
    return ARITHMETICS[version]


def _f64(t: torch.Tensor) -> torch.Tensor:
    return t.detach().cpu().to(_F64)


class PortableConv2d(nn.Module):
    def __init__(self, conv: nn.Conv2d, arithmetic: int = ARITHMETIC):
        super().__init__()
        self.ar = _arithmetic(arithmetic)
        weight = conv.weight
        if isinstance(conv, CheckerboardMaskedConv2d):  # the mask is applied in its forward
            weight = weight * conv.mask
        self.w = self.ar.weight(weight, conv.bias)
        self.stride, self.padding, self.groups = conv.stride[0], conv.padding[0], conv.groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ar.conv2d(x, self.w, self.stride, self.padding, self.groups)


class PortableConvTranspose2d(nn.Module):
    def __init__(self, conv: nn.ConvTranspose2d, arithmetic: int = ARITHMETIC):
        super().__init__()
        self.ar = _arithmetic(arithmetic)
        self.w = self.ar.weight(conv.weight, conv.bias, out_dim=1)
        self.stride, self.padding, self.output_padding = conv.stride[0], conv.padding[0], conv.output_padding[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ar.conv_transpose2d(x, self.w, self.stride, self.padding, self.output_padding)


class PortableLayerNorm(nn.Module):
    def __init__(self, norm: nn.LayerNorm, arithmetic: int = ARITHMETIC):
        super().__init__()
        self.weight, self.bias, self.eps = _f64(norm.weight), _f64(norm.bias), norm.eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return ops.layer_norm(x, self.weight, self.bias, self.eps)


def _linear(ar: Any, layer: nn.Linear) -> Any:
    return ar.weight(layer.weight, layer.bias)


class PortableRwkvBlock(nn.Module):
    """``x + g1 * SpatialMix(LN(x))``, ``x + g2 * ChannelMix(LN(x))`` as in ``RwkvBlock``."""

    def __init__(self, block: RwkvBlock, arithmetic: int = ARITHMETIC):
        super().__init__()
        ar = self.ar = _arithmetic(arithmetic)
        att, ffn = block.att, block.ffn
        self.ndim = block.ndim
        self.ln1, self.ln2 = PortableLayerNorm(block.ln1), PortableLayerNorm(block.ln2)
        self.att_shift, self.ffn_shift = ar.shift_weight(att.omni_shift), ar.shift_weight(ffn.omni_shift)
        self.att_kvr = ar.stack([_linear(ar, att.key), _linear(ar, att.value), _linear(ar, att.receptance)])
        self.att_output = _linear(ar, att.output)
        self.decay, self.boost = _f64(att.decay), _f64(att.boost)
        self.ffn_kr = ar.stack([_linear(ar, ffn.key), _linear(ar, ffn.receptance)])
        self.ffn_value = _linear(ar, ffn.value)
        self.gamma1, self.gamma2 = _f64(block.gamma1), _f64(block.gamma2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.ndim == 1:
            return self.tokens(x.to(_F64), None)
        b, c, h, w = x.shape
        t = x.to(_F64).permute(0, 2, 3, 1).reshape(b, h * w, c)
        return self.tokens(t, (h, w)).reshape(b, h, w, c).permute(0, 3, 1, 2)

    def tokens(self, t: torch.Tensor, hw: tuple[int, int] | None) -> torch.Tensor:
        if self.ar is ARITHMETICS[2]:
            return self._fused_tokens(t, hw)
        n, ar = t.shape[1], self.ar
        s = ar.shift(self.att_shift, self.ln1(t), hw)
        k, v, r = ar.linear_many(s, self.att_kvr, (False, False, False))
        y = ops.biwkv(self.decay / n, self.boost / n, k, v)
        t = t + self.gamma1 * ar.linear(ops.sigmoid(r) * y, self.att_output)
        s = ar.shift(self.ffn_shift, self.ln2(t), hw)
        k, r = ar.linear_many(s, self.ffn_kr, (True, False))
        kv = ar.linear(k, self.ffn_value)
        return t + self.gamma2 * (ops.sigmoid(r) * kv)

    def _fused_tokens(self, t: torch.Tensor, hw: tuple[int, int] | None) -> torch.Tensor:
        """``tokens`` in arithmetic 2: the same operations, the element-wise ones fused
        into the linear layers around them (``int_ops.linear``) and the hidden layer of
        the channel mix handed over on the integer grid."""
        n = t.shape[1]
        s = int_ops.shift(self.ln1(t), self.att_shift, hw)
        k, v, sr = int_ops.linear_many(s, self.att_kvr, ("none", "none", "sigmoid"))
        y = int_ops.biwkv(self.decay / n, self.boost / n, k, v)
        t = int_ops.linear(y, self.att_output, gate=sr, residual=t, gamma=self.gamma1)
        s = int_ops.shift(self.ln2(t), self.ffn_shift, hw)
        h, sr = int_ops.linear_many(s, self.ffn_kr, ("relu_square", "sigmoid"), quantised=(True, False))
        return int_ops.linear(h, self.ffn_value, out_gate=sr, residual=t, gamma=self.gamma2)


class PortableLinear(nn.Module):
    def __init__(self, layer: nn.Linear, arithmetic: int = ARITHMETIC):
        super().__init__()
        self.ar = _arithmetic(arithmetic)
        self.w = _linear(self.ar, layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ar.linear(x.to(_F64), self.w)


class PortableReLU(nn.Module):
    """ReLU is portable already (a comparison); this only moves the input to float64."""

    def __init__(self, _relu: nn.ReLU, arithmetic: int = ARITHMETIC):
        super().__init__()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.to(_F64).clamp_min(0)


class PortableEntropyParametersBlock(nn.Module):
    def __init__(self, block: EntropyParametersBlock, arithmetic: int = ARITHMETIC):
        super().__init__()
        ar = self.ar = _arithmetic(arithmetic)
        self.mix = PortableConv2d(block.mix, arithmetic)
        self.norm = PortableLayerNorm(block.norm)
        self.kr = ar.stack([_linear(ar, block.key), _linear(ar, block.receptance)])
        self.value = _linear(ar, block.value)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.mix(x)
        if self.ar is ARITHMETICS[2]:  # the same operations, fused (see PortableRwkvBlock)
            xt = x.permute(0, 2, 3, 1).contiguous()
            h, sr = int_ops.linear_many(self.norm(xt), self.kr, ("relu_square", "sigmoid"), quantised=(True, False))
            return int_ops.linear(h, self.value, out_gate=sr, residual=xt).permute(0, 3, 1, 2)
        t = self.norm(x.permute(0, 2, 3, 1))
        k, r = self.ar.linear_many(t, self.kr, (True, False))
        kv = self.ar.linear(k, self.value)
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


def to_portable(module: nn.Module, arithmetic: int = ARITHMETIC) -> nn.Module:
    """The portable counterpart of a layer or of a Sequential of layers (identities kept),
    computed with the given arithmetic (1 or 2)."""
    if isinstance(module, nn.Sequential):
        return nn.Sequential(*(to_portable(m, arithmetic) for m in module))
    if isinstance(module, nn.Identity):
        return module
    for kind in type(module).__mro__:
        if kind in _CONVERTERS:
            return _CONVERTERS[kind](module, arithmetic)
    raise TypeError(f"no portable counterpart for {type(module).__name__}")
