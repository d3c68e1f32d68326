"""The Bi-RWKV block: spatial mix (BiWKV linear attention) and channel mix.

2-D blocks (LALIC) take and return ``B x C x H x W`` maps like the convolutions
around them; inside, they work on ``B x T x C`` tokens in raster order (T = H*W).
A channels-last map and its tokens share memory, so blocks return channels-last
maps and a chain of blocks and convolutions never transposes. 1-D blocks (MRT)
take and return ``B x T x C`` token sequences and shift along the sequence.

Under CPU autocast to bf16 (``lalic_cli/precision.py``), inference runs the blocks'
matrix products in bf16 and keeps the rest in float32: the residual stream, BiWKV (a
scan over the whole image) and the element-wise work, which PyTorch runs slower in bf16
than in float32 on the CPU.
"""

from __future__ import annotations

import weakref

import torch
import torch.nn as nn

from ..ops.biwkv import biwkv
from .omnishift import OmniShift

# Tokens per chunk for the token-wise work at inference: the channel mix's hidden
# layer (rate x wider) then stays in cache, and large images stay in bounded memory.
# Set to 0 to disable chunking (the tests compare both).
TOKEN_CHUNK = 4096
_ROW_ALIGN = 64  # chunks start on multiples of this many rows, see _row_chunks
# Maps of at least this many values (512 MB in float32; a 4K image's first stage is
# 800 MB) trade a second LayerNorm and OmniShift for one map-sized tensor less at the
# peak of the spatial mix.
RECOMPUTE_ELEMENTS = 1 << 27


def _shift_tokens(shift: OmniShift, x: torch.Tensor, hw: tuple[int, int] | None) -> torch.Tensor:
    """Apply the OmniShift to ``B x T x C`` tokens without leaving token layout.

    The token tensor viewed as ``B x C x H x W`` is channels-last already, so the
    depthwise conv runs without a transpose copy. ``hw=None``: a 1-D sequence.
    """
    b, t, c = x.shape
    if hw is None:
        return shift(x.transpose(1, 2)).transpose(1, 2).contiguous()
    h, w = hw
    out = shift(x.view(b, h, w, c).permute(0, 3, 1, 2))
    return out.permute(0, 2, 3, 1).reshape(b, t, c)


def _row_chunks(n: int) -> list[slice]:
    """Row ranges of about TOKEN_CHUNK rows that give the same bits as one range.

    Vectorised element-wise kernels round their scalar tail differently, and BLAS
    takes other paths for a few rows: so every chunk starts on a multiple of
    _ROW_ALIGN rows (the vector/scalar split then falls where it falls for the whole
    tensor), and a short tail joins the chunk before it.
    """
    step = -(-max(TOKEN_CHUNK, 1) // _ROW_ALIGN) * _ROW_ALIGN if TOKEN_CHUNK > 0 else n
    starts = list(range(0, n, step))
    if len(starts) > 1 and n - starts[-1] < 16:
        starts.pop()
    return [slice(a, b) for a, b in zip(starts, starts[1:] + [n])]


# GEMM-ready weights per (first) Linear; weak keys, so a model's copies go with it and
# deepcopy or pickling of a model never sees them. Checked by a stamp at every use, not
# forgotten on events like the portable copies (portable/copies.py): these are only
# the linears' own weights and scales, and the stamp also sees in-place writes that no
# event reports (the EMA model's update, validated under no_grad during training).
_GEMM_WEIGHTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _gemm_weight(*linears: nn.Linear, scale: torch.Tensor | None = None,
                 dtype: torch.dtype | None = None) -> torch.Tensor:
    """``W^T`` of the linears side by side (rows optionally scaled) as a contiguous
    ``in x out`` matrix in ``dtype``: with a transposed operand BLAS picks kernels by row
    count, and chunks would round differently. Cached until a weight or the scale changes
    (storage or in-place version): building it every call cost 5 % of a Kodak encode."""
    with torch.no_grad():
        sources = [m.weight for m in linears] + ([] if scale is None else [scale])
        if any(t.is_inference() for t in sources):  # no version counter to check against
            return _gemm_matrix(linears, scale, dtype)
        stamp = tuple((t.data_ptr(), t._version) for t in sources)
        key = (tuple(id(m) for m in linears[1:]), scale is not None, dtype)
        cache = _GEMM_WEIGHTS.setdefault(linears[0], {})
        hit = cache.get(key)
        if hit is None or hit[0] != stamp:
            hit = cache[key] = (stamp, _gemm_matrix(linears, scale, dtype))
        return hit[1]


def _gemm_matrix(linears: tuple[nn.Linear, ...], scale: torch.Tensor | None, dtype: torch.dtype | None) -> torch.Tensor:
    ws = [m.weight if scale is None else m.weight * scale[:, None] for m in linears]
    w = torch.cat([w.t() for w in ws], 1).contiguous()
    return w if dtype is None else w.to(dtype)


def _low_precision(x: torch.Tensor) -> torch.dtype | None:
    """The GEMMs' dtype when autocast to a narrower one is on for ``x``'s device, else None."""
    device = x.device.type
    if torch.is_autocast_enabled(device) and torch.get_autocast_dtype(device) != x.dtype:
        return torch.get_autocast_dtype(device)
    return None


class SpatialMix(nn.Module):
    """Token mixing with a global receptive field at O(T) cost."""

    def __init__(self, dim: int, ndim: int = 2):
        super().__init__()
        self.omni_shift = OmniShift(dim, ndim)
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

    def residual(self, res: torch.Tensor, norm: nn.Module, hw: tuple[int, int], gamma: torch.Tensor) -> torch.Tensor:
        """Inference: ``res + gamma * forward(norm(res))``, token chunk by chunk, with the
        scale and the residual add folded into the output GEMM and in-place activations.

        The result overwrites the BiWKV output as it is consumed. On large maps the
        shifted input is dropped during BiWKV and computed again after (same bits):
        four map-sized tensors live at the peak instead of five.
        """
        b, t, c = res.shape
        dtype = _low_precision(res)
        if dtype is not None:
            return self._residual_low(res, norm, hw, gamma, dtype)

        def shifted() -> torch.Tensor:
            return _shift_tokens(self.omni_shift, norm(res), hw).view(b * t, c)

        x = shifted()
        k, v = x.new_empty(b * t, c), x.new_empty(b * t, c)
        w_key, w_val = _gemm_weight(self.key), _gemm_weight(self.value)
        for rows in _row_chunks(b * t):
            torch.mm(x[rows], w_key, out=k[rows])
            torch.mm(x[rows], w_val, out=v[rows])
        recompute = x.numel() >= RECOMPUTE_ELEMENTS
        if recompute:
            del x
        y = biwkv(self.decay / t, self.boost / t, k.view(b, t, c), v.view(b, t, c)).view(b * t, c)
        del k, v
        if recompute:
            x = shifted()
        res = res.reshape(b * t, c)
        w_rec, w_out = _gemm_weight(self.receptance), _gemm_weight(self.output, scale=gamma)
        for rows in _row_chunks(b * t):
            gate = torch.mm(x[rows], w_rec).sigmoid_().mul_(y[rows])
            torch.addmm(res[rows], gate, w_out, out=y[rows])
        return y.view(b, t, c)

    def _residual_low(self, res: torch.Tensor, norm: nn.Module, hw: tuple[int, int], gamma: torch.Tensor,
                      dtype: torch.dtype) -> torch.Tensor:
        """``residual`` with ``dtype`` (bf16) products: key, value and receptance in one
        product, whose receptance part then overwrites the shifted input (no recompute)."""
        b, t, c = res.shape
        x = _shift_tokens(self.omni_shift, norm(res), hw).view(b * t, c).to(dtype)
        w_kvr = _gemm_weight(self.key, self.value, self.receptance, dtype=dtype)
        k, v = res.new_empty(b * t, c), res.new_empty(b * t, c)
        for rows in _row_chunks(b * t):
            kvr = torch.mm(x[rows], w_kvr)
            k[rows].copy_(kvr[:, :c])
            v[rows].copy_(kvr[:, c: 2 * c])
            x[rows].copy_(kvr[:, 2 * c:])
        y = biwkv(self.decay / t, self.boost / t, k.view(b, t, c), v.view(b, t, c)).view(b * t, c)
        del k, v
        res = res.reshape(b * t, c)
        w_out = _gemm_weight(self.output, scale=gamma, dtype=dtype)
        for rows in _row_chunks(b * t):
            gate = x[rows].float().sigmoid_().mul_(y[rows]).to(dtype)
            y[rows].copy_(torch.mm(gate, w_out)).add_(res[rows])
        return y.view(b, t, c)


class ChannelMix(nn.Module):
    """Gated squared-ReLU feed-forward after an OmniShift."""

    def __init__(self, dim: int, hidden_rate: int = 4, ndim: int = 2):
        super().__init__()
        self.omni_shift = OmniShift(dim, ndim)
        self.key = nn.Linear(dim, hidden_rate * dim, bias=False)
        self.receptance = nn.Linear(dim, dim, bias=False)
        self.value = nn.Linear(hidden_rate * dim, dim, bias=False)

    def forward(self, x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
        x = _shift_tokens(self.omni_shift, x, hw)
        kv = self.value(torch.relu(self.key(x)).square())
        return torch.sigmoid(self.receptance(x)) * kv

    def residual_(self, res: torch.Tensor, norm: nn.Module, hw: tuple[int, int], gamma: torch.Tensor) -> torch.Tensor:
        """Inference: ``res += gamma * forward(norm(res))`` in place, token chunk by chunk,
        so the hidden layer stays small."""
        b, t, c = res.shape
        dtype = _low_precision(res)
        x = _shift_tokens(self.omni_shift, norm(res), hw).view(b * t, c)
        out = res.view(b * t, c)
        w_key, w_rec = _gemm_weight(self.key, dtype=dtype), _gemm_weight(self.receptance, dtype=dtype)
        w_val = _gemm_weight(self.value, scale=gamma, dtype=dtype)
        if dtype is not None:  # bf16 products; the gate and the sum in float32
            x = x.to(dtype)
        for rows in _row_chunks(b * t):
            xc = x[rows]
            hidden = torch.mm(xc, w_key).relu_().square_()
            # .float() is the tensor itself in float32, a conversion from bf16 products
            out[rows].addcmul_(torch.mm(xc, w_rec).float().sigmoid_(), torch.mm(hidden, w_val).float())
        return res


class RwkvBlock(nn.Module):
    """Pre-norm residual block: ``x + g1*SpatialMix(LN(x))``, ``x + g2*ChannelMix(LN(x))``.

    ``ndim=2``: maps in, maps out; ``ndim=1``: ``B x T x C`` sequences in and out.
    """

    def __init__(self, dim: int, hidden_rate: int = 4, ndim: int = 2):
        super().__init__()
        self.ndim = ndim
        self.ln1 = nn.LayerNorm(dim)
        self.ln2 = nn.LayerNorm(dim)
        self.att = SpatialMix(dim, ndim)
        self.ffn = ChannelMix(dim, hidden_rate, ndim)
        self.gamma1 = nn.Parameter(torch.ones(dim))
        self.gamma2 = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.ndim == 1:
            return self.tokens(x, None)
        b, c, h, w = x.shape
        t = x.permute(0, 2, 3, 1).reshape(b, h * w, c)  # a view when x is channels-last
        return self.tokens(t, (h, w)).view(b, h, w, c).permute(0, 3, 1, 2)

    def tokens(self, t: torch.Tensor, hw: tuple[int, int] | None) -> torch.Tensor:
        """The block on ``B x T x C`` tokens (raster order of an ``hw`` map, or a sequence)."""
        if torch.is_grad_enabled():
            t = t + self.gamma1 * self.att(self.ln1(t), hw)
            return t + self.gamma2 * self.ffn(self.ln2(t), hw)
        t = self.att.residual(t, self.ln1, hw, self.gamma1)
        return self.ffn.residual_(t, self.ln2, hw, self.gamma2)
