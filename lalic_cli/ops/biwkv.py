"""BiWKV, the bidirectional WKV operator of Vision-RWKV.

For per-channel ``w, u`` (shape C) and ``k, v`` (shape B x T x C), for every b, t, c::

    y[t] = ( sum_{i != t} exp(-(|t-i| - 1) * w + k[i]) * v[i]  +  exp(u + k[t]) * v[t] )
         / ( sum_{i != t} exp(-(|t-i| - 1) * w + k[i])         +  exp(u + k[t]) )

Implementations:

* :func:`biwkv_reference` - the naive O(T^2) formula in float64 (tests only);
* :func:`biwkv_torch` - exact, O(T*C), pure PyTorch (log-space scans in float64),
  differentiable by autograd, any device;
* :func:`biwkv_scan` - the same sums as plain float64 prefix sums under one shift per
  sequence; a few memory-bound passes, so on a GPU it is the fast training path;
* the compiled kernels in ``lalic_cli.kernels`` (CPU: C++/OpenMP, CUDA), float32;
* :mod:`lalic_cli.ops.biwkv_triton`, a chunked parallel scan in Triton, float32, for
  CUDA tensors (the CUDA kernel walks T serially). Opt-in (``impl="triton"`` or
  ``LALIC_BIWKV=triton``) until it has been checked and timed on a GPU: so far it is
  tested through Triton's CPU interpreter only.

:func:`biwkv` picks the kernel for the tensors' device and falls back to
:func:`biwkv_torch`; ``impl="torch"|"kernel"|"triton"`` or ``LALIC_BIWKV=...``
forces a path.
"""

from __future__ import annotations

import functools
import os

import torch
from torch.autograd.function import once_differentiable

__all__ = ["biwkv", "biwkv_reference", "biwkv_scan", "biwkv_torch"]

# Largest spread of k_i +- i*w within one sequence for which biwkv_scan is exact: every
# shifted term e^{x - max x} then stays a normal float64 (> e^-708), none underflows.
SCAN_MAX_SPREAD = 600.0


def _check_shapes(w: torch.Tensor, u: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> None:
    if k.dim() != 3 or v.shape != k.shape:
        raise ValueError(f"biwkv: k and v must be B x T x C with equal shapes, got {tuple(k.shape)}, {tuple(v.shape)}")
    c = k.shape[-1]
    if w.shape != (c,) or u.shape != (c,):
        raise ValueError(f"biwkv: w and u must have shape ({c},), got {tuple(w.shape)}, {tuple(u.shape)}")


def biwkv_reference(w, u, k, v, *, max_elements: int = 1 << 22) -> torch.Tensor:
    """The formula above, term by term, in float64 (O(T^2); rows in blocks to bound memory).

    Each row is shifted by its own maximum log-weight before exponentiating, which
    changes nothing mathematically but avoids overflow for large ``|w| * T``.
    """
    _check_shapes(w, u, k, v)
    w, u, k, v = (x.detach().to(torch.float64) for x in (w, u, k, v))
    B, T, C = k.shape
    pos = torch.arange(T, device=k.device)
    rows = max(1, max_elements // max(1, B * T * C))
    out = torch.empty_like(k)
    for s in range(0, T, rows):
        t = pos[s : s + rows]
        dist = (t[:, None] - pos[None, :]).abs().to(torch.float64)  # R x T (row t, column i)
        logw = -(dist - 1)[None, :, :, None] * w + k[:, None, :, :]  # B x R x T x C
        centre = (u + k[:, t, :])[:, :, None, :]  # B x R x 1 x C
        logw = torch.where((dist == 0)[None, :, :, None], centre, logw)
        e = torch.exp(logw - logw.amax(dim=2, keepdim=True))
        out[:, s : s + rows] = (e * v[:, None]).sum(2) / e.sum(2)
    return out


def _in_float64(w, u, k, v):
    """Checked inputs in float64, ``i * w`` (T x C), and the dtype the result takes."""
    _check_shapes(w, u, k, v)
    out_dtype = torch.promote_types(k.dtype, v.dtype)
    w, u, k, v = (x.to(torch.float64) for x in (w, u, k, v))
    iw = torch.arange(k.shape[1], dtype=torch.float64, device=k.device)[:, None] * w
    return w, u, k, v, iw, out_dtype


def _exclusive_logcumsumexp(x: torch.Tensor, reverse: bool) -> torch.Tensor:
    """log sum_{i<t} exp(x_i) (or sum_{i>t} when reverse) along dim 1; -inf when empty."""
    if reverse:
        x = x.flip(1)
    s = torch.logcumsumexp(x, dim=1)
    s = torch.cat([torch.full_like(s[:, :1], float("-inf")), s[:, :-1]], dim=1)
    return s.flip(1) if reverse else s


def biwkv_torch(w, u, k, v) -> torch.Tensor:
    """Exact BiWKV in O(B*T*C) time and memory with log-space scans (float64).

    past:   sum_{i<t} e^{k_i - (t-1-i) w} x_i = e^{-(t-1) w} sum_{i<t} e^{k_i + i w} x_i
    future: sum_{i>t} e^{k_i - (i-1-t) w} x_i = e^{(t+1) w}  sum_{i>t} e^{k_i - i w} x_i
    Both are exclusive logcumsumexp scans of ``k_i +- i w + log x_i``, for x = 1
    (denominator) and x = v + s (numerator), where the per-sequence shift
    s = 1 - min(v) makes the values positive; y = num / den - s.  The parts are
    combined after subtracting the per-position maximum of the denominator terms.
    Differentiable by autograd.  Returns the promoted dtype of k and v.
    """
    w, u, k, v, iw, out_dtype = _in_float64(w, u, k, v)
    # y is unchanged by the shift, so it carries no gradient; v + s >= 1
    shift = (1 - v.amin(dim=1, keepdim=True)).detach()
    logv = torch.log(v + shift)
    centre = u + k

    def parts(lx):
        past = (w - iw) + _exclusive_logcumsumexp(k + iw + lx, reverse=False)
        futr = (w + iw) + _exclusive_logcumsumexp(k - iw + lx, reverse=True)
        return past, futr, centre + lx

    den_parts, num_parts = parts(0.0), parts(logv)
    # shift of the exponents: the largest denominator term (detached: y does not depend on it)
    m = torch.maximum(torch.maximum(den_parts[0], den_parts[1]), centre).detach()
    den = sum(torch.exp(p - m) for p in den_parts)
    num = sum(torch.exp(p - m) for p in num_parts)
    return (num / den - shift).to(out_dtype)


def _exclusive_cumsum(x: torch.Tensor, reverse: bool) -> torch.Tensor:
    """sum_{i<t} x_i (or sum_{i>t} when reverse) along dim 1, by shifting, never by
    subtracting (a difference of sums would cancel a small tail against a large head)."""
    if reverse:
        x = x.flip(1)
    c = torch.cat([torch.zeros_like(x[:, :1]), x[:, :-1].cumsum(1)], dim=1)
    return c.flip(1) if reverse else c


def scan_spread(w: torch.Tensor, k: torch.Tensor) -> float:
    """Largest spread of ``k_i +- i*w`` within one sequence (``SCAN_MAX_SPREAD`` bounds it)."""
    T = k.shape[1]
    k, w = k.detach(), w.detach()
    kmax, kmin = k.amax(1), k.amin(1)  # B x C
    return float((kmax - kmin + (T - 1) * w.abs()).max())


def biwkv_scan(w, u, k, v) -> torch.Tensor:
    """BiWKV with plain prefix sums in float64; exact while ``scan_spread <= SCAN_MAX_SPREAD``.

    past:   e^{w - t w} sum_{i<t} e^{a_i} x_i,  a_i = k_i + i w
    future: e^{w + t w} sum_{i>t} e^{b_i} x_i,  b_i = k_i - i w
    Each sum runs over e^{a_i - max a} (one shift per sequence), so no term overflows
    and, within the spread bound, none underflows: the sums are ordinary float64 sums.
    The three parts are combined relative to the largest denominator part at each t.
    Differentiable by autograd; returns the promoted dtype of k and v.
    """
    w, u, k, v, iw, out_dtype = _in_float64(w, u, k, v)
    a, b = k + iw, k - iw
    ma, mb = a.amax(1, keepdim=True).detach(), b.amax(1, keepdim=True).detach()
    ea, eb = torch.exp(a - ma), torch.exp(b - mb)
    pd, pn = _exclusive_cumsum(ea, False), _exclusive_cumsum(ea * v, False)
    fd, fn = _exclusive_cumsum(eb, True), _exclusive_cumsum(eb * v, True)
    la, lb, lc = (w - iw) + ma, (w + iw) + mb, u + k  # log-scales of the three parts
    with torch.no_grad():
        m = torch.maximum(torch.maximum(la + pd.log(), lb + fd.log()), lc)
    sa, sb, sc = torch.exp(la - m), torch.exp(lb - m), torch.exp(lc - m)
    y = (sa * pn + sb * fn + sc * v) / (sa * pd + sb * fd + sc)
    return y.to(out_dtype)


class _BiWKVKernel(torch.autograd.Function):
    """Autograd wrapper of a compiled extension (float32, contiguous inputs)."""

    @staticmethod
    def forward(ctx, ext, w, u, k, v):
        ctx.ext = ext
        ctx.save_for_backward(w, u, k, v)
        return ext.forward(w, u, k, v)

    @staticmethod
    @once_differentiable
    def backward(ctx, gy):
        w, u, k, v = ctx.saved_tensors
        gw, gu, gk, gv = ctx.ext.backward(w, u, k, v, gy.contiguous())
        return None, gw, gu, gk, gv


def _kernel_for(device: torch.device):
    from lalic_cli.kernels import load_extension

    if device.type == "cuda":
        return load_extension("cuda")
    if device.type == "cpu":
        return load_extension("cpu")
    return None


@functools.lru_cache(maxsize=None)
def _triton_module():
    """:mod:`lalic_cli.ops.biwkv_triton`, or None where triton does not import."""
    try:
        from lalic_cli.ops import biwkv_triton
    except ImportError:
        return None
    return biwkv_triton


def _run_triton(w, u, k, v) -> torch.Tensor:
    module = _triton_module()
    if module is None:
        raise RuntimeError("biwkv: triton is not importable")
    return module.biwkv_triton(w, u, k, v)


def biwkv(w, u, k, v, *, impl: str | None = None) -> torch.Tensor:
    """BiWKV on the fastest available path for the tensors' device.

    ``impl``: None (automatic: the compiled kernel, else :func:`biwkv_torch`), "torch",
    "kernel" (the compiled extension) or "triton" (raise if they cannot be used).  When ``impl`` is None the environment variable
    ``LALIC_BIWKV`` (same values) is honoured.  The kernels compute in float32; the
    result has the promoted dtype of k and v.
    """
    _check_shapes(w, u, k, v)
    choice = impl if impl is not None else (os.environ.get("LALIC_BIWKV") or None)
    if choice not in (None, "auto", "torch", "kernel", "scan", "triton"):
        raise ValueError(f"biwkv: unknown implementation {choice!r} (expected 'torch', 'kernel', 'triton' or 'scan')")
    if choice == "triton":
        return _run_triton(w, u, k, v)
    if choice == "torch":
        return biwkv_torch(w, u, k, v)
    if choice == "scan":
        if scan_spread(w, k) <= SCAN_MAX_SPREAD:
            return biwkv_scan(w, u, k, v)
        return biwkv_torch(w, u, k, v)
    ext = _kernel_for(k.device)
    if ext is None:
        if choice == "kernel":
            raise RuntimeError(f"biwkv: no compiled kernel available for device {k.device}")
        return biwkv_torch(w, u, k, v)
    out_dtype = torch.promote_types(k.dtype, v.dtype)
    dev = k.device
    w, u, k, v = (x.to(device=dev, dtype=torch.float32).contiguous() for x in (w, u, k, v))
    return _BiWKVKernel.apply(ext, w, u, k, v).to(out_dtype)
