"""Order-independent operators for the portable entropy path (issue 10).

Every function here returns the same bits on every IEEE-754 machine, whatever the
BLAS, the instruction set or the thread count, because it uses only:

1. reductions (GEMMs, convolutions, sums) over *integer-valued* float64 or int64
   operands whose partial sums stay below 2^53 (float64) or 2^63 (int64). Such
   sums are exact, so their order, blocking and FMA use cannot change them;
2. element-wise ``+ - * /``, ``sqrt``, ``round``, ``floor``, comparisons, ``max``
   and multiplication by powers of two, which IEEE-754 defines to the last bit;
3. no library transcendental: :func:`exp` is a fixed sequence of such operations.

They run on CPU tensors: CUDA kernels replace some divisions by a multiplication
with the reciprocal, which is not bit-equal. ``docs/portable.md`` gives the bounds.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "ACT_BITS",
    "WEIGHT_BITS",
    "QuantWeight",
    "QuantStack",
    "quantize",
    "pow2",
    "exp",
    "sigmoid",
    "linear",
    "linear_many",
    "conv2d",
    "conv_transpose2d",
    "layer_norm",
    "sqrt",
    "biwkv",
    "log",
    "tanh",
    "softplus",
    "erfc",
]

ACT_BITS = 22  # |activation integer| < 2^22
WEIGHT_BITS = 17  # |weight integer| < 2^17
MAX_TERMS = 1 << (52 - ACT_BITS - WEIGHT_BITS)  # products < 2^39: 2^13 of them sum below 2^52

_F64 = torch.float64


def pow2(e: torch.Tensor | int) -> torch.Tensor:
    """2^e for integer e in [-1022, 1023], built from its bits (no ``pow`` call)."""
    e = torch.as_tensor(e, dtype=torch.int64)
    return ((e + 1023) << 52).view(_F64)


def relu_square(x: torch.Tensor) -> torch.Tensor:
    """relu(x)^2 in float64: a clamp and one correctly rounded product (both arithmetics)."""
    r = x.clamp_min(0)
    return r.mul_(r)


def _kernel(impl: str | None = None):
    """The C++ extension of these operators (kind ``"exact"`` of ``load_extension``: the
    same bits as the PyTorch code here), or None for ``impl="torch"`` or where it cannot
    be built."""
    if impl == "torch":
        return None
    from lalic_cli.kernels import load_extension

    ext = load_extension("exact")
    if ext is None and impl == "kernel":
        raise RuntimeError("portable ops: the C++ kernel is not available")
    return ext


def _absmax(x: torch.Tensor, impl: str | None = None) -> float:
    if not x.numel():
        return 0.0
    ext = _kernel(impl)
    return ext.absmax(x) if ext is not None else float(x.abs().max())


def _scale_exponent(x: torch.Tensor, bits: int, impl: str | None = None) -> int:
    """The power of two that brings max|x| just below 2^bits (frexp is exact)."""
    m = _absmax(x, impl)
    if m == 0.0 or not math.isfinite(m):
        if not math.isfinite(m):
            raise ValueError("portable ops: non-finite input")
        return 0
    _, e = math.frexp(m)  # m = f * 2^e, 0.5 <= f < 1, so m < 2^e
    return bits - e


def quantize(x: torch.Tensor, bits: int = ACT_BITS, impl: str | None = None) -> tuple[torch.Tensor, int]:
    """``(X, s)`` with X = round(x * 2^s) integer-valued float64, |X| <= 2^bits."""
    ext = _kernel(impl)
    if ext is not None:
        x = x.contiguous()  # once, not in each of the kernel's two passes
    s = _scale_exponent(x, bits, impl)
    if ext is not None and x.numel():
        return ext.scale_round(x, s), s
    return torch.round(x.to(_F64) * pow2(s)), s


class QuantWeight:
    """A weight tensor as integers times 2^-s (one exponent per tensor), and its bias at
    the accumulator scale of a given input exponent."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None = None):
        self.q, self.s = quantize(weight.detach().cpu(), WEIGHT_BITS)
        self.bias = None if bias is None else bias.detach().cpu().to(_F64)
        self.shape = tuple(weight.shape)

    def add_bias(self, acc: torch.Tensor, scale: int, dim: int, impl: str | None = None) -> torch.Tensor:
        """``acc * 2^-scale + bias``: one exact scaling and one rounded addition."""
        ext = _kernel(impl)
        if ext is not None:
            return ext.scale_bias(acc, -scale, self.bias, dim)
        out = acc * pow2(-scale)
        if self.bias is not None:
            shape = [1] * out.dim()
            shape[dim] = -1
            out.add_(self.bias.view(shape))
        return out


class QuantStack:
    """Linear weights that read the same input, run as one GEMM: each output is the
    integer sum its own weight gives (exact), so the bits are those of separate calls,
    for one quantisation of the input instead of one per weight."""

    def __init__(self, weights: list[QuantWeight]):
        if len({w.shape[1] for w in weights}) != 1:
            raise ValueError("QuantStack: the weights must share their input width")
        self.parts = weights
        self.q = torch.cat([w.q for w in weights], 0)
        self.sizes = [w.shape[0] for w in weights]


def _check_terms(k: int) -> None:
    if k > MAX_TERMS:
        raise ValueError(f"portable ops: {k} terms per output exceed the exact bound {MAX_TERMS}")


def _integer_gemm(x: torch.Tensor, q: torch.Tensor) -> tuple[torch.Tensor, int]:
    """The exact integer sums ``X @ q^T`` over the last dim of x, and X's exponent."""
    _check_terms(q.shape[1])
    xq, s = quantize(x)
    return xq.reshape(-1, xq.shape[-1]) @ q.t(), s


def linear(x: torch.Tensor, w: QuantWeight) -> torch.Tensor:
    """``x @ W^T + b`` over the last dim, exactly on the integer grid."""
    acc, s = _integer_gemm(x, w.q)
    return w.add_bias(acc, s + w.s, 1).reshape(*x.shape[:-1], w.shape[0])


def linear_many(x: torch.Tensor, stack: QuantStack) -> list[torch.Tensor]:
    """``[linear(x, w) for w in stack.parts]`` with one quantisation and one GEMM."""
    acc, s = _integer_gemm(x, stack.q)
    return [w.add_bias(a, s + w.s, 1).reshape(*x.shape[:-1], w.shape[0])
            for w, a in zip(stack.parts, acc.split(stack.sizes, 1))]


def conv2d(x: torch.Tensor, w: QuantWeight, stride: int = 1, padding: int = 0, groups: int = 1,
           impl: str | None = None) -> torch.Tensor:
    """2-D convolution as im2col and an integer GEMM (never Winograd or FFT, which
    transform the operands and would not be exact); depthwise ones as a direct sum."""
    b, c, h, wd = x.shape
    cout, cin_g, kh, kw = w.shape
    _check_terms(cin_g * kh * kw)
    xq, s = quantize(x, impl=impl)
    ext = _kernel(impl)
    if ext is not None and cin_g == 1 and cout == groups and stride == 1:
        return w.add_bias(ext.depthwise_conv2d(xq, w.q, padding), s + w.s, 1)
    cols = F.unfold(xq, (kh, kw), padding=padding, stride=stride)  # B x (C*kh*kw) x L
    oh = (h + 2 * padding - kh) // stride + 1
    ow = (wd + 2 * padding - kw) // stride + 1
    cols = cols.view(b, groups, cin_g * kh * kw, oh * ow)
    wq = w.q.view(groups, cout // groups, cin_g * kh * kw)
    if cin_g == 1 and cout == groups:  # depthwise: one dot product of kh*kw taps per channel
        acc = (cols * wq.view(1, groups, kh * kw, 1)).sum(2)
    else:
        acc = torch.matmul(wq.unsqueeze(0), cols).reshape(b, cout, oh * ow)
    return w.add_bias(acc, s + w.s, 1).view(b, cout, oh, ow)


def conv_transpose2d(x: torch.Tensor, w: QuantWeight, stride: int, padding: int, output_padding: int) -> torch.Tensor:
    """Transposed convolution as a GEMM onto columns and ``fold``, which adds the
    overlapping integer contributions (exact in any order)."""
    b, cin, h, wd = x.shape
    _, cout, kh, kw = w.shape
    _check_terms(cin * ((kh + stride - 1) // stride) * ((kw + stride - 1) // stride))
    xq, s = quantize(x)
    cols = w.q.view(cin, cout * kh * kw).t() @ xq.view(b, cin, h * wd)  # B x (Cout*kh*kw) x (H*W)
    oh = (h - 1) * stride - 2 * padding + kh + output_padding
    ow = (wd - 1) * stride - 2 * padding + kw + output_padding
    full = F.fold(cols, (oh + 2 * padding, ow + 2 * padding), (kh, kw), stride=stride)
    acc = full[..., padding: padding + oh, padding: padding + ow]
    return w.add_bias(acc, s + w.s, 1)


def sqrt(x: torch.Tensor) -> torch.Tensor:
    """The correctly rounded square root IEEE-754 defines. PyTorch's CPU ``sqrt`` is
    not it: for 0.9 % of random float64 inputs its result is one ulp off (measured,
    torch 2.14, every ATen CPU capability), so it goes through NumPy's, which is."""
    return torch.from_numpy(np.sqrt(x.detach().cpu().to(_F64).numpy()))


def layer_norm(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float,
               impl: str | None = None) -> torch.Tensor:
    """LayerNorm over the last dim with integer statistics (int64: C * sum X^2 < 2^63)."""
    c = x.shape[-1]
    ext = _kernel(impl)
    if ext is not None and 0 < c <= 4096 and x.numel():
        return ext.layer_norm(x, _scale_exponent(x, 20, impl), weight.detach(), bias.detach(), float(eps))
    xq, s = quantize(x, 20, impl)
    xi = xq.to(torch.int64)
    total = xi.sum(-1, keepdim=True)
    sq = (xi * xi).sum(-1, keepdim=True)
    var_num = c * sq - total * total  # C^2 * var * 4^s, exact
    scale = pow2(-s)
    mean = total.to(_F64) * scale / c
    var = var_num.to(_F64) * (scale * scale) / (c * c)
    rstd = 1.0 / sqrt(var + eps)
    y = (x.to(_F64) - mean) * rstd
    return y * weight.detach().to(_F64) + bias.detach().to(_F64)


_LN2_HI = 0.693147180369123816490  # ln 2 with its low 32 bits zero: n * _LN2_HI is exact
_LN2_LO = 1.90821492927058770002e-10
_INV_LN2 = 1.44269504088896338700
# 1/k! for the Taylor series of e^r on |r| <= ln2/2 (degree 13: truncation < 1e-17)
_TAYLOR = [1.0 / math.factorial(k) for k in range(13, -1, -1)]


def exp(x: torch.Tensor, impl: str | None = None, terms: int = 14) -> torch.Tensor:
    """e^x in float64 from +, *, round and a power of two; accurate to a few ulp and
    the same bits everywhere. Saturates to 0 below -700 and to e^700 above 700.
    ``terms=9`` keeps the series' last 9 terms (arithmetic 2): relative error < 3e-10."""
    if terms not in (14, 9):
        raise ValueError("exp: 14 or 9 series terms")
    ext = _kernel(impl)
    if ext is not None:
        return ext.exp(x, terms)
    x = x.to(_F64).clamp(-700.0, 700.0)
    n = torch.round(x * _INV_LN2)
    r = (x - n * _LN2_HI) - n * _LN2_LO
    coefficients = _TAYLOR[-terms:]
    p = torch.full_like(r, coefficients[0])
    for c in coefficients[1:]:
        p = p * r
        p = p + c
    return p * pow2(n.to(torch.int64))


def sigmoid(x: torch.Tensor, impl: str | None = None, terms: int = 14) -> torch.Tensor:
    """1 / (1 + e^-x), with :func:`exp`."""
    ext = _kernel(impl)
    if ext is not None:
        return ext.sigmoid(x, terms)
    return 1.0 / (1.0 + exp(-x.to(_F64), impl="torch", terms=terms))


def log(x: torch.Tensor) -> torch.Tensor:
    """ln x for x > 0: x = m 2^e (frexp, exact), m in [sqrt(1/2), sqrt(2)), then
    2 atanh((m-1)/(m+1)) as a series (|s| <= 0.172, 12 terms: error < 1e-18)."""
    m, e = torch.frexp(x.to(_F64))
    small = m < 0.7071067811865476
    m = torch.where(small, m * 2.0, m)
    e = torch.where(small, e - 1, e).to(_F64)
    s = (m - 1.0) / (m + 1.0)
    s2 = s * s
    p = torch.full_like(s, 1.0 / 23.0)
    for k in range(21, 0, -2):
        p = p * s2
        p = p + 1.0 / k
    return (2.0 * s) * p + (e * _LN2_HI + e * _LN2_LO)


def tanh(x: torch.Tensor) -> torch.Tensor:
    """1 - 2 / (e^{2x} + 1), with :func:`exp` (saturates to +-1)."""
    return 1.0 - 2.0 / (exp(2.0 * x.to(_F64)) + 1.0)


def softplus(x: torch.Tensor) -> torch.Tensor:
    """ln(1 + e^x), and x itself above 20 as PyTorch's softplus does."""
    x = x.to(_F64)
    return torch.where(x > 20.0, x, log(1.0 + exp(torch.clamp(x, max=20.0))))


# erfc(z) = t exp(-z^2 + P(t)), t = 1 / (1 + z/2): the Chebyshev fit of Numerical
# Recipes (section 6.2), relative error < 1.2e-7 everywhere
_ERFC = (0.17087277, -0.82215223, 1.48851587, -1.13520398, 0.27886807, -0.18628806,
         0.09678418, 0.37409196, 1.00002368, -1.26551223)


def erfc(x: torch.Tensor) -> torch.Tensor:
    """Complementary error function from rule-2 operations and :func:`exp`."""
    x = x.to(_F64)
    z = x.abs()
    t = 1.0 / (1.0 + 0.5 * z)
    p = torch.full_like(t, _ERFC[0])
    for c in _ERFC[1:]:
        p = p * t
        p = p + c
    y = t * exp(p - z * z)
    return torch.where(x >= 0, y, 2.0 - y)


BIWKV_CHUNK = 64  # most tokens per chunk: chunk sums of E*V stay below 2^62
_CHUNK_DECAY = 4.0  # and at most this much decay across a chunk (L * max|w|)
_E_BITS = 36  # chunk-local exponentials as integers <= 2^36
_V_BITS = 20  # values as integers < 2^20
_EMPTY = -1e300  # log-scale of an empty sum


def _past_parts(k: torch.Tensor, vq: torch.Tensor, w: torch.Tensor, L: int, impl: str | None = None,
                terms: int = 14) -> list[tuple[torch.Tensor, ...]]:
    """Past sums of every position as two (log-scale, den, num) parts: the carry from
    earlier chunks and the exact prefix inside the chunk.

    Inside a chunk the terms e^{k_i + j w - max} are integers (36 bits) and their
    prefix sums are exact int64. Chunks are chained by a serial loop of element-wise
    operations in a fixed order, each normalised by its own maximum, so the error is
    near L * 2^-37 * e^{2 L |w|} of the largest term, whatever the decay over T; L
    shrinks so that L * |w| <= 4 (in the model w = decay / T, so about |decay| / 4
    chunks suffice, whatever T).
    """
    b, t, c = k.shape
    n = -(-t // L)
    kc = F.pad(k, (0, 0, 0, n * L - t), value=_EMPTY).view(b, n, L, c)
    vc = F.pad(vq, (0, 0, 0, n * L - t)).view(b, n, L, c)
    j = torch.arange(L, dtype=_F64)[:, None]
    a = kc + j * w
    m = a.amax(2, keepdim=True)
    e = torch.round(exp(a - m, impl, terms) * pow2(_E_BITS)).to(torch.int64)
    ev = e * vc
    lp = torch.cumsum(e, 2) - e  # exclusive prefixes, exact in int64
    lpv = torch.cumsum(ev, 2) - ev
    tot_e, tot_ev = e.sum(2).to(_F64), ev.sum(2).to(_F64)
    unit = pow2(-_E_BITS)

    r = torch.full((b, c), _EMPTY, dtype=_F64)
    sd, sn = torch.zeros(b, c, dtype=_F64), torch.zeros(b, c, dtype=_F64)
    carry = []
    for ci in range(n):
        carry.append((r, sd, sn))
        decayed = r - L * w
        chunk_scale = m[:, ci, 0] - (L - 1) * w
        r_new = torch.maximum(decayed, chunk_scale)
        f_old, f_new = exp(decayed - r_new, impl, terms), exp(chunk_scale - r_new, impl, terms) * unit
        sd = sd * f_old + tot_e[:, ci] * f_new
        sn = sn * f_old + tot_ev[:, ci] * f_new
        r = r_new
    r_all, sd_all, sn_all = (torch.stack(x, 1)[:, :, None, :] for x in zip(*carry))  # B x n x 1 x C

    scale1 = torch.where(sd_all > 0, r_all - j * w, torch.full_like(r_all, _EMPTY))
    scale2 = torch.where(lp > 0, m - (j - 1) * w, torch.full_like(m, _EMPTY))
    parts = [
        (scale1, sd_all.expand_as(kc), sn_all.expand_as(kc)),
        (scale2, lp.to(_F64) * unit, lpv.to(_F64) * unit),
    ]
    return [tuple(x.reshape(b, n * L, c)[:, :t] for x in p) for p in parts]


def _chunk_length(w: torch.Tensor) -> int:
    wmax = float(w.abs().max()) if w.numel() else 0.0
    return max(1, min(BIWKV_CHUNK, int(_CHUNK_DECAY / wmax) if wmax > 0 else BIWKV_CHUNK))


def biwkv(w: torch.Tensor, u: torch.Tensor, k: torch.Tensor, v: torch.Tensor, impl: str | None = None,
          terms: int = 14) -> torch.Tensor:
    """BiWKV (see ``lalic_cli.ops.biwkv``) with the same bits everywhere, in float64.

    ``w, u`` (C) and ``k, v`` (B x T x C) must themselves be reproducible (outputs of
    the operators above). Values are taken on a 20-bit grid of their maximum.
    The C++ kernel (``kernels/biwkv_exact.cpp``) runs the same operations and gives the
    same bits; ``impl="torch"|"kernel"`` forces one. ``terms``: those of every :func:`exp`.
    """
    w, u, k = (x.to(_F64).contiguous() for x in (w, u, k))
    vq, sv = quantize(v, _V_BITS, impl)
    L = _chunk_length(w)
    ext = _kernel(impl)
    if ext is not None:
        return ext.forward(w, u, k, vq.contiguous(), L, sv, terms)
    vi = vq.to(torch.int64)
    past = _past_parts(k, vi, w, L, impl, terms)
    future = [tuple(x.flip(1) for x in p) for p in _past_parts(k.flip(1), vi.flip(1), w, L, impl, terms)]
    centre = (u + k, torch.ones_like(k), vq)
    parts = [*past, *future, centre]
    m = parts[0][0]
    for p in parts[1:]:
        m = torch.maximum(m, p[0])
    den, num = torch.zeros_like(k), torch.zeros_like(k)
    for scale, d, nv in parts:
        coef = exp(scale - m, impl, terms)
        den = den + coef * d
        num = num + coef * nv
    return num / den * pow2(-sv)
