"""Arithmetic 2 of the portable path (format version 4): linear layers and convolutions
on 15-bit integers with int32 sums, as fast as float32 and exact by construction.

An activation becomes X = round(x * 2^s) with |X| <= 2^14 (one exponent s per row of a
linear layer's input, one per tensor for a convolution's), a weight row of output
channel n becomes W = round(w * 2^e_n) with |W| <= 2^14 and sum |W| <= ``L1_MAX``.
Every partial sum of every output, in whatever order or grouping, is then at most
2^14 * L1_MAX < 2^31 in magnitude, so an int32 accumulator never overflows and a
float64 one never rounds: vector ``dpwssd``/``pmaddwd`` kernels, any blocking, any
thread count and the float64 GEMM of the PyTorch reference all give the same integers.
The output is acc * 2^-(s + e_n) (exact) + bias_n (one rounding).

The OmniShift depthwise convolution needs no integers: its 25 float64 products per
output are added in one fixed order (taps row by row), a sequence of correctly rounded
operations with the same bits everywhere. LayerNorm, exp, sigmoid and BiWKV are those
of arithmetic 1 (``lalic_cli.portable.ops``). ``docs/portable.md`` gives the bounds.

Each operator takes ``impl``: None (the C++ kernel where it was built), ``"torch"`` or
``"kernel"``; both give the same bits.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

from . import ops
from .ops import pow2

__all__ = [
    "ACT_BITS",
    "L1_MAX",
    "IntWeight",
    "IntStack",
    "QRows",
    "quantize",
    "quantize_rows",
    "linear",
    "linear_many",
    "conv2d",
    "conv_transpose2d",
    "shift",
    "biwkv",
]

ACT_BITS = 14  # |X| <= 2^14 and |W| <= 2^14: a pair of products stays below 2^31 too
L1_MAX = (2**31 - 1) >> ACT_BITS  # sum |W| of a row: 2^14 * L1_MAX < 2^31
EXP_TERMS = 9  # the series terms of e^x here (ops.exp): relative error < 3e-10
_EXP_MAX = 900  # exponents in [-900, 900]: 2^-(s + e) stays a normal double
_W_EXP_MAX = 100
_F64 = torch.float64


def _kernel(impl: str | None):
    ext = ops._kernel(impl)
    return ext if ext is not None and hasattr(ext, "int_linear") else (None if impl != "kernel" else _missing())


def _missing():
    raise RuntimeError("portable int ops: the C++ kernel is not available")


def _exponents(m: torch.Tensor, limit: int) -> torch.Tensor:
    """Per maximum m, the s that brings m just below 2^14 (frexp is exact); 0 for m = 0,
    at most ``limit`` (a tiny row then rounds to few bits, never out of bounds)."""
    if not bool(torch.isfinite(m).all()):
        raise ValueError("portable ops: non-finite input")
    s = ACT_BITS - torch.frexp(m)[1].to(torch.int64)
    s = torch.where(m == 0, torch.zeros_like(s), s).clamp(max=limit)
    if bool((s < -limit).any()):
        raise ValueError("portable ops: input beyond the integer grid's range")
    return s


def quantize(x: torch.Tensor) -> tuple[torch.Tensor, int]:
    """``(X, s)``: X = round(x * 2^s) integer-valued float64, |X| <= 2^14, one s."""
    x = x.to(_F64)
    m = x.abs().max() if x.numel() else torch.zeros((), dtype=_F64)
    s = int(_exponents(m.reshape(1), _EXP_MAX)[0])
    return torch.round(x * pow2(s)), s


def quantize_rows(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(X, s)`` for a 2-D x: one exponent per row, |X| <= 2^14."""
    x = x.to(_F64)
    m = x.abs().amax(1) if x.shape[1] else torch.zeros(x.shape[0], dtype=_F64)
    s = _exponents(m, _EXP_MAX)
    return torch.round(x * pow2(s)[:, None]), s


class IntWeight:
    """A weight as integers with one exponent per output channel (dim ``out_dim``: 0 for
    linear layers and convolutions, 1 for transposed convolutions), and its bias."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None = None, out_dim: int = 0):
        w = weight.detach().cpu().to(_F64)
        self.shape = tuple(weight.shape)
        rows = w.movedim(out_dim, 0).reshape(w.shape[out_dim], -1)
        e = _exponents(rows.abs().amax(1) if rows.shape[1] else torch.zeros(rows.shape[0], dtype=_F64), _W_EXP_MAX)
        while True:  # lower e_n until the row's sum |W| fits (at most log2(K) steps)
            q = torch.round(rows * pow2(e)[:, None])
            over = q.abs().sum(1) > L1_MAX
            if not bool(over.any()):
                break
            e = e - over.to(torch.int64)
        if bool((e < -_W_EXP_MAX).any()):
            raise ValueError("portable ops: weight beyond the integer grid's range")
        self.e = e
        self.rows = q  # out x K (float64 integers), K in the input's (channel, tap) order
        self.q = q.reshape(w.movedim(out_dim, 0).shape).movedim(0, out_dim)
        self.bias = None if bias is None else bias.detach().cpu().to(_F64)
        self._packed: dict[str, torch.Tensor] = {}

    def packed(self, kind: str) -> torch.Tensor:
        """The integers in the kernel's layouts, made once: ``"rows"`` (out x K, int16,
        K padded to even, without all-zero columns, and the indices of the columns kept),
        ``"panels"`` (columns of 16 outputs, pairs along K) or, for a transposed
        convolution, ``"taps"`` ((out, kh, kw) x in, int16)."""
        if kind not in self._packed:
            if kind == "taps":
                self._packed[kind] = _rows16(self.q.reshape(self.shape[0], -1).t())
            elif kind == "rows":  # without the columns that are zero in every row (masked taps)
                used = self.rows.abs().sum(0) > 0
                keep = used.nonzero()[:, 0] if 0 < int(used.sum()) < used.numel() else torch.zeros(0, dtype=torch.int64)
                self._packed[kind] = (_rows16(self.rows[:, keep] if keep.numel() else self.rows), keep)
            else:
                self._packed[kind] = _panels(self.rows)
        return self._packed[kind]


def _rows16(rows: torch.Tensor) -> torch.Tensor:
    k = rows.shape[1]
    return F.pad(rows, (0, k % 2)).to(torch.int16).contiguous()


def _panels(rows: torch.Tensor) -> torch.Tensor:
    """out x K -> P x K/2 x 16 x 2 (P = ceil(out/16)): the layout the kernel streams."""
    n, k = rows.shape
    r = F.pad(rows, (0, k % 2, 0, -n % 16)).to(torch.int16)
    return r.view(-1, 16, r.shape[1] // 2, 2).permute(0, 2, 1, 3).contiguous()


class IntStack:
    """Linear weights that read the same input, as one GEMM (each output is the integer
    sum of its own row, so the bits are those of separate calls)."""

    def __init__(self, weights: list[IntWeight]):
        if len({w.shape[1] for w in weights}) != 1:
            raise ValueError("IntStack: the weights must share their input width")
        self.parts = weights
        self.sizes = [w.shape[0] for w in weights]
        self.weight = IntWeight.__new__(IntWeight)
        self.weight.rows = torch.cat([w.rows for w in weights], 0)
        self.weight.e = torch.cat([w.e for w in weights], 0)
        self.weight.shape = (sum(self.sizes), weights[0].shape[1])
        # a missing bias becomes zeros: acc * 2^-(s+e) is never -0.0, so adding +0.0 changes no bit
        biases = [w.bias if w.bias is not None else torch.zeros(w.shape[0], dtype=_F64) for w in weights]
        self.weight.bias = torch.cat(biases) if any(w.bias is not None for w in weights) else None
        self.weight._packed = {}


def _epilogue(acc: torch.Tensor, exps: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    out = acc * pow2(-exps)
    return out if bias is None else out + bias


ACTIVATIONS = {"none": 0, "relu_square": 1, "sigmoid": 2}


class QRows(NamedTuple):
    """A layer's output left on the integer grid for the next linear layer (what that
    layer's quantisation would make of it): ``q`` M x K int16 (K padded to even), each
    row's exponent ``s``, and the logical shape of the values."""

    q: torch.Tensor
    s: torch.Tensor
    shape: tuple[int, ...]


def _activate(y: torch.Tensor, act: str) -> torch.Tensor:
    if act == "relu_square":
        return ops.relu_square(y)
    return ops.sigmoid(y, terms=EXP_TERMS) if act == "sigmoid" else y


def _linear_torch(x: torch.Tensor | QRows, gate: torch.Tensor | None, w: IntWeight, parts: list[int],
                  acts: list[str], tail: tuple) -> list[torch.Tensor]:
    k = w.rows.shape[1]
    if isinstance(x, QRows):
        xq, s = x.q[:, :k].to(_F64), x.s
    else:
        xq, s = quantize_rows(x if gate is None else x * gate)
    acc = xq @ w.rows.t()
    outs, lo = [], 0
    for n, act in zip(parts, acts):
        bias = None if w.bias is None else w.bias[lo: lo + n]
        outs.append(_activate(_epilogue(acc[:, lo: lo + n], s[:, None] + w.e[None, lo: lo + n], bias), act))
        lo += n
    residual, gamma, out_gate = tail
    y = outs[-1]
    if out_gate is not None:
        y = out_gate * y
    if gamma is not None:
        y = gamma * y
    if residual is not None:
        y = residual + y
    outs[-1] = y
    return outs


def _flat(t: torch.Tensor | None, width: int) -> torch.Tensor | None:
    return None if t is None else t.to(_F64).reshape(-1, width).contiguous()


def _linear(x: torch.Tensor | QRows, w: IntWeight, parts: list[int], acts: list[str], quantised: list[bool],
            gate: torch.Tensor | None = None, residual: torch.Tensor | None = None, gamma: torch.Tensor | None = None,
            out_gate: torch.Tensor | None = None, impl: str | None = None) -> list[torch.Tensor | QRows]:
    shape = tuple(x.shape)
    k, lead = shape[-1], shape[:-1]
    if k != w.shape[1]:
        raise ValueError(f"linear: input width {k}, the weight takes {w.shape[1]}")
    ext = _kernel(impl)
    tail = (_flat(residual, sum(parts)), gamma, _flat(out_gate, sum(parts)))
    if ext is None:
        x2 = x if isinstance(x, QRows) else x.reshape(-1, k).to(_F64)
        outs = _linear_torch(x2, _flat(gate, k), w, parts, acts, tail)
        return [o.reshape(*lead, n) for o, n in zip(outs, parts)]
    bias = w.bias if w.bias is not None else torch.zeros(0, dtype=_F64)
    if isinstance(x, QRows):
        args = (x.q, x.s, None)
    else:
        args = (x.to(_F64).reshape(-1, k).contiguous(), None, _flat(gate, k))
    flat = ext.int_linear(*args, w.packed("panels"), w.e, bias, parts, [ACTIVATIONS[a] for a in acts], quantised,
                          tail[0], None if gamma is None else gamma.to(_F64).contiguous(), tail[2], EXP_TERMS)
    outs, i = [], 0
    for n, q in zip(parts, quantised):
        if q:
            outs.append(QRows(flat[i], flat[i + 1], (*lead, n)))
            i += 2
        else:
            outs.append(flat[i].reshape(*lead, n))
            i += 1
    return outs


def linear(x: torch.Tensor | QRows, w: IntWeight, act: str = "none", *, gate: torch.Tensor | None = None,
           residual: torch.Tensor | None = None, gamma: torch.Tensor | None = None,
           out_gate: torch.Tensor | None = None, quantised: bool = False, impl: str | None = None) -> torch.Tensor | QRows:
    """``residual + gamma * (out_gate * act(q(x * gate) @ W^T * 2^-(s+e) + b))`` over the last
    dim, each optional term left out when None: the integer GEMM and the element-wise
    steps in that order, fused into one pass where the kernel runs. ``quantised=True``
    may return the result as :class:`QRows` for the next layer."""
    return _linear(x, w, [w.shape[0]], [act], [quantised], gate, residual, gamma, out_gate, impl)[0]


def linear_many(x: torch.Tensor | QRows, stack: IntStack, acts: tuple[str, ...] | None = None,
                quantised: tuple[bool, ...] | None = None, impl: str | None = None) -> list[torch.Tensor | QRows]:
    """``[linear(x, w, act) for w, act in zip(stack.parts, acts)]`` with one quantisation
    of x and one GEMM; ``quantised`` flags parts that may return as :class:`QRows`."""
    n = len(stack.parts)
    return _linear(x, stack.weight, stack.sizes, list(acts or ["none"] * n), list(quantised or [False] * n),
                   impl=impl)


def conv2d(x: torch.Tensor, w: IntWeight, stride: int = 1, padding: int = 0, impl: str | None = None) -> torch.Tensor:
    """2-D convolution (no groups) as im2col and an integer GEMM, one input exponent; a
    1x1 one (stride 1, no padding) is the linear layer of each position, one exponent per
    position (its result is then a channels-last view)."""
    b, c, h, wd = x.shape
    cout, cin, kh, kw = w.shape
    if cin != c:
        raise ValueError(f"conv2d: {c} input channels, the weight takes {cin}")
    if kh == kw == 1 and stride == 1 and padding == 0:
        ext = _kernel(impl)
        if ext is None or not x.is_contiguous():  # (a channels-last x is contiguous tokens)
            return linear(x.permute(0, 2, 3, 1), w, impl=impl).permute(0, 3, 1, 2)
        bias = w.bias if w.bias is not None else torch.zeros(0, dtype=_F64)
        y = ext.int_linear(x.to(_F64).reshape(b, c, h * wd), None, None, w.packed("panels"), w.e, bias, [cout], [0],
                           [False], None, None, None, EXP_TERMS)[0]
        return y.view(b, h, wd, cout).permute(0, 3, 1, 2)
    oh = (h + 2 * padding - kh) // stride + 1
    ow = (wd + 2 * padding - kw) // stride + 1
    ext = _kernel(impl)
    if ext is not None:
        m = ops._absmax(x, "kernel")
        s = int(_exponents(torch.tensor([m], dtype=_F64), _EXP_MAX)[0])
        bias = w.bias if w.bias is not None else torch.zeros(0, dtype=_F64)
        rows, taps = w.packed("rows")
        return ext.int_conv2d(x.to(_F64).contiguous(), s, rows, w.e, bias, kh, kw, stride, padding, taps)
    xq, s = quantize(x)
    cols = F.unfold(xq, (kh, kw), padding=padding, stride=stride)  # B x K x L
    acc = torch.matmul(w.rows, cols)  # B x cout x L
    bias = None if w.bias is None else w.bias[:, None]
    return _epilogue(acc, (w.e + s)[:, None], bias).view(b, cout, oh, ow)


def conv_transpose2d(x: torch.Tensor, w: IntWeight, stride: int, padding: int, output_padding: int,
                     impl: str | None = None) -> torch.Tensor:
    """Transposed convolution: an integer GEMM onto columns and ``fold``, which adds the
    overlapping contributions (integers below 2^31: exact in float64, in any order).
    ``w`` has one exponent per output channel (``out_dim=1``)."""
    b, cin, h, wd = x.shape
    _, cout, kh, kw = w.shape
    oh = (h - 1) * stride - 2 * padding + kh + output_padding
    ow = (wd - 1) * stride - 2 * padding + kw + output_padding
    ext = _kernel(impl)
    if ext is not None and (oh, ow) == (stride * h, stride * wd):
        return _phase_convs(ext, x, w, stride, padding)
    xq, s = quantize(x)
    if ext is not None:
        taps = w.packed("taps")
        cols = torch.stack([ext.int_gemm(taps, _panels(xq[i].reshape(cin, h * wd).t()), h * wd).to(_F64)
                            for i in range(b)])
    else:
        cols = w.q.reshape(cin, cout * kh * kw).t() @ xq.reshape(b, cin, h * wd)  # B x (cout kh kw) x HW
    full = F.fold(cols, (oh + 2 * padding, ow + 2 * padding), (kh, kw), stride=stride)
    acc = full[..., padding: padding + oh, padding: padding + ow]
    bias = None if w.bias is None else w.bias[:, None, None]
    return _epilogue(acc, (w.e + s)[:, None, None], bias)


def _phase_offsets(k: int, stride: int, padding: int) -> list[list[tuple[int, int]]]:
    """Per output phase a (output index = stride * m + a): the taps i that reach it and
    the input offset d they read (input index m + d)."""
    return [[(i, (a + padding - i) // stride) for i in range(k) if (a + padding - i) % stride == 0]
            for a in range(stride)]


def _phase_convs(ext, x: torch.Tensor, w: IntWeight, stride: int, padding: int) -> torch.Tensor:
    """A transposed convolution whose output is ``stride`` times its input as ``stride^2``
    stride-1 convolutions, one per output phase, each with only the taps that reach that
    phase (placed on a (2R+1)^2 window): every output is the same integer sum."""
    key = f"phases{stride},{padding}"
    cin, cout, kh, kw = w.shape
    rows_off, cols_off = _phase_offsets(kh, stride, padding), _phase_offsets(kw, stride, padding)
    r = max(abs(d) for taps in rows_off + cols_off for _, d in taps)
    if key not in w._packed:
        kernels = []
        for ri in rows_off:
            for ci in cols_off:
                sub = torch.zeros(cout, cin, 2 * r + 1, 2 * r + 1, dtype=_F64)
                for i, di in ri:
                    for j, dj in ci:
                        sub[:, :, di + r, dj + r] = w.q[:, :, i, j].t()
                rows = sub.reshape(cout, -1)
                keep = (rows.abs().sum(0) > 0).nonzero()[:, 0]  # this phase's taps (one, if none)
                keep = keep if keep.numel() else torch.zeros(1, dtype=torch.int64)
                kernels.append((_rows16(rows[:, keep]), keep))
        w._packed[key] = kernels
    s = int(_exponents(torch.tensor([ops._absmax(x, "kernel")], dtype=_F64), _EXP_MAX)[0])
    b, _, h, wd = x.shape
    x64 = x.to(_F64).contiguous()
    bias = w.bias if w.bias is not None else torch.zeros(0, dtype=_F64)
    out = torch.empty(b, cout, stride * h, stride * wd, dtype=_F64)
    for n, (rows, keep) in enumerate(w._packed[key]):
        a, c = divmod(n, stride)
        out[:, :, a::stride, c::stride] = ext.int_conv2d(x64, s, rows, w.e, bias, 2 * r + 1, 2 * r + 1, 1, r, keep)
    return out


KEY_RANGE = 80.0  # a channel's max k - min k for the recurrence: e^-80 stays far from underflow
DECAY_RANGE = 500.0  # and its |w| (T + 1) + |u|: the sums stay within e^+-580


def biwkv(w: torch.Tensor, u: torch.Tensor, k: torch.Tensor, v: torch.Tensor, impl: str | None = None) -> torch.Tensor:
    """BiWKV (``lalic_cli.ops.biwkv``) in arithmetic 2. A channel whose keys span at most
    ``KEY_RANGE`` and whose |w| (T + 1) + |u| is at most ``DECAY_RANGE`` takes the two
    recurrences P_{t+1} = q P_t + e_t v_t (forward) and F_{t-1} = q F_t + e_t v_t
    (backward), e_t = e^{k_t - max k}, q = e^-w, run in that fixed order in float64, and
    y = ((P + F) + eu e v) / ((Pd + Fd) + eu e), eu = e^u: a sequence of correctly
    rounded operations, one exp per element. Any other channel takes ``ops.biwkv`` (the
    chunked integer sums). Every exp has ``EXP_TERMS`` terms."""
    w, u, k, v = (t.to(_F64).contiguous() for t in (w, u, k, v))
    n = k.shape[1]
    fast = ((k.amax(1) - k.amin(1) <= KEY_RANGE) & (w.abs() * (n + 1) + u.abs() <= DECAY_RANGE)).contiguous()
    ext = _kernel(impl)
    if ext is not None:
        everywhere = bool(fast.all())
        vq, sv = (torch.zeros(0, dtype=_F64), 0) if everywhere else ops.quantize(v, ops._V_BITS, "kernel")
        L = 1 if everywhere else ops._chunk_length(w)
        return ext.forward_fast(w, u, k, v, fast, vq.contiguous(), L, sv, EXP_TERMS)
    y = _recurrent(w, u, k, v)
    if not bool(fast.all()):
        y = torch.where(fast[:, None, :], y, ops.biwkv(w, u, k, v, impl="torch", terms=EXP_TERMS))
    return y


def _recurrent(w: torch.Tensor, u: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    b, n, c = k.shape
    e = ops.exp(k - k.amax(1, keepdim=True), impl="torch", terms=EXP_TERMS)
    q = ops.exp(-w, impl="torch", terms=EXP_TERMS)
    eu = ops.exp(u, impl="torch", terms=EXP_TERMS)
    ev = e * v
    an, ad = torch.zeros(b, c, dtype=_F64), torch.zeros(b, c, dtype=_F64)
    fn, fd = torch.empty_like(k), torch.empty_like(k)
    for t in range(n - 1, -1, -1):
        fn[:, t], fd[:, t] = an, ad
        an = q * an + ev[:, t]
        ad = q * ad + e[:, t]
    ec = eu * e
    y = torch.empty_like(k)
    an, ad = torch.zeros(b, c, dtype=_F64), torch.zeros(b, c, dtype=_F64)
    for t in range(n):
        y[:, t] = ((an + fn[:, t]) + ec[:, t] * v[:, t]) / ((ad + fd[:, t]) + ec[:, t])
        an = q * an + ev[:, t]
        ad = q * ad + e[:, t]
    return y


def shift(x: torch.Tensor, weight: torch.Tensor, hw: tuple[int, int] | None, impl: str | None = None) -> torch.Tensor:
    """OmniShift's depthwise convolution on tokens ``B x T x C`` (a ``h x w`` map, or a
    1 x T sequence for ``hw=None``) with zero padding: per output, the products of its
    in-range taps added in tap order to 0.0 (float64; skipping a zero term changes no bit
    since the running sum is never -0.0). ``weight`` is ``C x kh x kw`` (float64)."""
    b, t, c = x.shape
    h, wd = hw if hw is not None else (1, t)
    kh, kw = weight.shape[1:]
    ext = _kernel(impl)
    if ext is not None:
        return ext.shift(x.to(_F64).contiguous(), weight.contiguous(), h, wd)
    ph, pw = kh // 2, kw // 2
    xp = F.pad(x.to(_F64).reshape(b, h, wd, c), (0, 0, pw, pw, ph, ph))
    out = torch.zeros(b, h, wd, c, dtype=_F64)
    for i in range(kh):
        for j in range(kw):
            out = out + weight[:, i, j] * xp[:, i: i + h, j: j + wd]
    return out.reshape(b, t, c)

