"""BiWKV as a chunked parallel scan in Triton, forward and backward.

Why: the CUDA kernel (``kernels/biwkv_cuda.cu``) gives each (batch, channel) one thread
that walks T serially, so a GPU runs B*C threads and waits on T dependent steps.  Here
every sum is an associative scan, parallel over (chunk, batch, channel block).

Every running sum of the compiled kernels (``kernels/biwkv_common.h``) is a sum of terms
``e^{base_i - (x - anchor_i) w} * (x1_i, x2_i)`` evaluated at a position x, stored
relative to its largest term, the reference ``(rb, ra)``: the sum at x is
``e^{rb - (x - ra) w} * (n1, n2)``.  Two such sums add with one comparison of their
references, ``(rb_a - rb_b) - (ra_b - ra_a) * w`` (integer distances subtracted before
multiplying by w, as the kernels do, so no exponent is the small difference of two large
numbers), and the addition is associative and commutative: a ``tl.associative_scan``
gives the prefix sums of a chunk, in either direction.  Future sums are past sums with
positions mirrored (x -> -x).  The gradient of w needs the distance-weighted sums
``sum (x - anchor_i) * term_i``; they travel as moments about the reference anchor.

Three phases per set of sums: (1) each chunk's total, (2) the carries, an exclusive scan
over chunk totals per (batch, channel block), (3) per chunk, the scans inside it plus the
carries, combined into y as the kernels' ``mix`` does.  The backward runs the same three
phases twice: once over (k, v) to rebuild the forward's sums, with moments, writing the
diagonal gradients and each position's output scale; once over the output-side terms
``g_t e^{-M_t}`` for the gradients of k and v, which are scans of the same form.  It is
chunked recomputation rather than stored forward state: nothing of size B*T*C is kept
between forward and backward except the inputs.

Float32 throughout, like the kernels' weights (their sums are double; here float32 sums
added in a tree).  Tested on the CPU through ``TRITON_INTERPRET=1`` and compiled for sm_90
there (tests/test_biwkv_triton.py); not yet run or timed on a GPU.
"""

from __future__ import annotations

import contextlib

import torch
import triton
import triton.language as tl

__all__ = ["biwkv_triton", "BLOCKS"]

# (BLOCK_T: chunk length, BLOCK_C: channels per program, BLOCK_N: chunk totals per step of
# the carry scan, num_warps).  Chosen without a GPU: the largest tiles that ptxas compiles
# for sm_90 without spilling registers; benchmarks/biwkv_speed.py --triton-blocks compares
# others on a GPU.  Tests pass small ones so that the interpreter runs many chunks quickly.
BLOCKS = (64, 32, 16, 8)

EMPTY = tl.constexpr(-1e38)  # base of an empty sum: every weight relative to it is 0 (kEmpty in the kernels)


@triton.jit
def _scales(rb_a, ra_a, rb_b, ra_b, w):
    """Factors of two sums relative to the larger reference, and whether that is a's."""
    diff = (rb_a - rb_b) - (ra_b - ra_a) * w
    keep = diff >= 0.0
    e = tl.exp(-tl.abs(diff))
    return keep, tl.where(keep, 1.0, e), tl.where(keep, e, 1.0)


@triton.jit
def _add(rb_a, ra_a, n1_a, n2_a, w_a, rb_b, ra_b, n1_b, n2_b, w_b):
    """The sum of two sums (w rides along: a combine function sees only its operands)."""
    keep, sa, sb = _scales(rb_a, ra_a, rb_b, ra_b, w_a)
    return (tl.where(keep, rb_a, rb_b), tl.where(keep, ra_a, ra_b),
            sa * n1_a + sb * n1_b, sa * n2_a + sb * n2_b, w_a)


@triton.jit
def _add_m(rb_a, ra_a, n1_a, n2_a, m1_a, m2_a, w_a, rb_b, ra_b, n1_b, n2_b, m1_b, m2_b, w_b):
    """:func:`_add` with moments m = sum (ra - anchor_i) * term_i about the reference."""
    keep, sa, sb = _scales(rb_a, ra_a, rb_b, ra_b, w_a)
    ra = tl.where(keep, ra_a, ra_b)
    da, db = ra - ra_a, ra - ra_b
    return (tl.where(keep, rb_a, rb_b), ra, sa * n1_a + sb * n1_b, sa * n2_a + sb * n2_b,
            sa * (m1_a + da * n1_a) + sb * (m1_b + db * n1_b),
            sa * (m2_a + da * n2_a) + sb * (m2_b + db * n2_b), w_a)


@triton.jit
def _plus(rb_a, ra_a, n1_a, n2_a, m1_a, m2_a, w_a, rb_b, ra_b, n1_b, n2_b, m1_b, m2_b, w_b,
          MOMENTS: tl.constexpr):
    """:func:`_add_m`, or :func:`_add` with m1, m2 as copies of n1, n2, outside a scan."""
    if MOMENTS:
        out = _add_m(rb_a, ra_a, n1_a, n2_a, m1_a, m2_a, w_a, rb_b, ra_b, n1_b, n2_b, m1_b, m2_b, w_b)
    else:
        rb, ra, n1, n2, w = _add(rb_a, ra_a, n1_a, n2_a, w_a, rb_b, ra_b, n1_b, n2_b, w_b)
        out = rb, ra, n1, n2, n1, n2, w
    return out


@triton.jit
def _terms(base_ptr, extra_ptr, x1_ptr, x2_ptr, off, pos, cols, cmask, T, C,
           REVERSE: tl.constexpr, GRAD: tl.constexpr):
    """The term that row ``pos`` adds to its exclusive sum: position pos - 1 (past) or
    pos + 1 (future, mirrored).  Forward terms: base k, anchor next to it, (v, 1).
    Gradient terms: base -lb, anchor shifted by the output scale's distance ln, (g, g*y)."""
    t = pos + 1 if REVERSE else pos - 1
    ok = (t >= 0) & (t < T)
    mask = ok[:, None] & cmask[None, :]
    idx = off + t.to(tl.int64)[:, None] * C + cols[None, :]
    base = tl.load(base_ptr + idx, mask=mask, other=EMPTY)
    x1 = tl.load(x1_ptr + idx, mask=mask, other=0.0)
    if GRAD:
        extra = tl.load(extra_ptr + idx, mask=mask, other=0.0)
        x2 = tl.load(x2_ptr + idx, mask=mask, other=0.0)
    else:
        extra = tl.zeros_like(x1)
        x2 = tl.where(mask, 1.0, 0.0)
    tf = t.to(tl.float32)[:, None]
    anchor = (1.0 - tf) + extra if REVERSE else (tf + 1.0) + extra
    return base, anchor, x1, x2


@triton.jit
def _scan(rb, ra, n1, n2, m1, m2, w, REVERSE: tl.constexpr, MOMENTS: tl.constexpr, TOTAL: tl.constexpr):
    """Inclusive sums along axis 0 (TOTAL: the sum of all rows, kept as one row), with or
    without the moments; without, m1 and m2 come back as copies of n1 and n2."""
    if MOMENTS:
        if TOTAL:
            out = tl.reduce((rb, ra, n1, n2, m1, m2, w), 0, _add_m, keep_dims=True)
        else:
            out = tl.associative_scan((rb, ra, n1, n2, m1, m2, w), 0, _add_m, reverse=REVERSE)
    else:
        if TOTAL:
            rb, ra, n1, n2, w = tl.reduce((rb, ra, n1, n2, w), 0, _add, keep_dims=True)
        else:
            rb, ra, n1, n2, w = tl.associative_scan((rb, ra, n1, n2, w), 0, _add, reverse=REVERSE)
        out = rb, ra, n1, n2, n1, n2, w
    return out


@triton.jit
def _chunk_sums(base_ptr, extra_ptr, x1_ptr, x2_ptr, off, pos, cols, cmask, w, T, C,
                REVERSE: tl.constexpr, GRAD: tl.constexpr, MOMENTS: tl.constexpr, TOTAL: tl.constexpr):
    """Exclusive sums inside one chunk at every row (TOTAL: the chunk's total instead)."""
    rb, ra, n1, n2 = _terms(base_ptr, extra_ptr, x1_ptr, x2_ptr, off, pos, cols, cmask, T, C, REVERSE, GRAD)
    z = tl.zeros_like(n1)
    return _scan(rb, ra, n1, n2, z, z, tl.broadcast_to(w[None, :], rb.shape), REVERSE, MOMENTS, TOTAL)


@triton.jit
def _store_sums(ptr, idx, mask, plane, rb, ra, n1, n2, m1, m2, NF: tl.constexpr):
    """Stores the fields of sums (rb, ra, n1, n2[, m1, m2]), one plane each."""
    tl.store(ptr + idx, rb, mask=mask)
    tl.store(ptr + plane + idx, ra, mask=mask)
    tl.store(ptr + 2 * plane + idx, n1, mask=mask)
    tl.store(ptr + 3 * plane + idx, n2, mask=mask)
    if NF == 6:
        tl.store(ptr + 4 * plane + idx, m1, mask=mask)
        tl.store(ptr + 5 * plane + idx, m2, mask=mask)


@triton.jit
def _load_sums(ptr, idx, mask, plane, NF: tl.constexpr):
    """The fields stored by :func:`_store_sums`; empty sums where masked."""
    rb = tl.load(ptr + idx, mask=mask, other=EMPTY)
    ra = tl.load(ptr + plane + idx, mask=mask, other=0.0)
    n1 = tl.load(ptr + 2 * plane + idx, mask=mask, other=0.0)
    n2 = tl.load(ptr + 3 * plane + idx, mask=mask, other=0.0)
    if NF == 6:
        m1 = tl.load(ptr + 4 * plane + idx, mask=mask, other=0.0)
        m2 = tl.load(ptr + 5 * plane + idx, mask=mask, other=0.0)
    else:
        m1 = n1
        m2 = n2
    return rb, ra, n1, n2, m1, m2


@triton.jit
def _tile(w_ptr, T, C, BLOCK_T: tl.constexpr, BLOCK_C: tl.constexpr):
    """This program's chunk j, batch b, rows, channels and their w (grid: chunk, b, channel block)."""
    j, b, cb = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    cols = cb * BLOCK_C + tl.arange(0, BLOCK_C)
    cmask = cols < C
    w = tl.load(w_ptr + cols, mask=cmask, other=0.0)
    return j, b, j * BLOCK_T + tl.arange(0, BLOCK_T), cols, cmask, b.to(tl.int64) * T * C, w


@triton.jit
def _rows(k_ptr, v_ptr, off, pos, cols, cmask, T, C):
    """The mask and offsets of the tile's own elements, and their k and v."""
    mask = (pos < T)[:, None] & cmask[None, :]
    idx = off + pos.to(tl.int64)[:, None] * C + cols[None, :]
    return mask, idx, tl.load(k_ptr + idx, mask=mask, other=0.0), tl.load(v_ptr + idx, mask=mask, other=0.0)


@triton.jit
def _totals_kernel(base_ptr, extra_ptr, x1_ptr, x2_ptr, w_ptr, tot_ptr, B, T, C, NCH,
                   GRAD: tl.constexpr, MOMENTS: tl.constexpr, NF: tl.constexpr,
                   BLOCK_T: tl.constexpr, BLOCK_C: tl.constexpr):
    """Phase 1: the past and future totals of chunk j into tot[dir, field, b, j, c]."""
    j, b, pos, cols, cmask, off, w = _tile(w_ptr, T, C, BLOCK_T, BLOCK_C)
    plane = B * NCH * C
    idx = ((b * NCH + j) * C + cols)[None, :]
    for d in tl.static_range(2):
        rb, ra, n1, n2, m1, m2, _w = _chunk_sums(base_ptr, extra_ptr, x1_ptr, x2_ptr, off, pos, cols, cmask, w, T, C,
                                                 d == 1, GRAD, MOMENTS, True)
        _store_sums(tot_ptr + d * NF * plane, idx, cmask[None, :], plane, rb, ra, n1, n2, m1, m2, NF)


@triton.jit
def _carry_dir(tot_ptr, car_ptr, w, cols, cmask, b, B, C, NCH, REVERSE: tl.constexpr,
               MOMENTS: tl.constexpr, NF: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_C: tl.constexpr):
    """Exclusive scan over the chunk totals of one direction, BLOCK_N chunks per step."""
    plane = B * NCH * C
    src = tot_ptr + (1 if REVERSE else 0) * NF * plane + b * NCH * C
    dst = car_ptr + (1 if REVERSE else 0) * NF * plane + b * NCH * C
    zero = tl.zeros([1, BLOCK_C], tl.float32)
    w1 = w[None, :] + zero
    wt = w1 + tl.zeros([BLOCK_N, BLOCK_C], tl.float32)
    rb, ra, n1, n2, m1, m2 = zero + EMPTY, zero, zero, zero, zero, zero
    nblocks = tl.cdiv(NCH, BLOCK_N)
    for i in range(nblocks):
        s = (nblocks - 1 - i) * BLOCK_N if REVERSE else i * BLOCK_N
        js = s + tl.arange(0, BLOCK_N)
        src_j = js + 1 if REVERSE else js - 1  # exclusive: row j takes its neighbour's total
        ok = (src_j >= 0) & (src_j < NCH)
        f_rb, f_ra, f_n1, f_n2, f_m1, f_m2 = _load_sums(src, src_j[:, None] * C + cols[None, :],
                                                        ok[:, None] & cmask[None, :], plane, NF)
        s_rb, s_ra, s_n1, s_n2, s_m1, s_m2, _w = _scan(f_rb, f_ra, f_n1, f_n2, f_m1, f_m2, wt, REVERSE, MOMENTS, False)
        t_rb, t_ra, t_n1, t_n2, t_m1, t_m2, _w = _scan(f_rb, f_ra, f_n1, f_n2, f_m1, f_m2, wt, REVERSE, MOMENTS, True)
        o_rb, o_ra, o_n1, o_n2, o_m1, o_m2, _w = _plus(rb, ra, n1, n2, m1, m2, w1,
                                                       s_rb, s_ra, s_n1, s_n2, s_m1, s_m2, wt, MOMENTS)
        _store_sums(dst, js[:, None] * C + cols[None, :], (js < NCH)[:, None] & cmask[None, :], plane,
                    o_rb, o_ra, o_n1, o_n2, o_m1, o_m2, NF)
        rb, ra, n1, n2, m1, m2, _w = _plus(rb, ra, n1, n2, m1, m2, w1, t_rb, t_ra, t_n1, t_n2, t_m1, t_m2, w1, MOMENTS)


@triton.jit
def _carry_kernel(tot_ptr, car_ptr, w_ptr, B, C, NCH, MOMENTS: tl.constexpr, NF: tl.constexpr,
                  BLOCK_N: tl.constexpr, BLOCK_C: tl.constexpr):
    """Phase 2: per (b, channel block, direction) the sums of all chunks before (past) or
    after (future) each chunk."""
    b, cb, d = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    cols = cb * BLOCK_C + tl.arange(0, BLOCK_C)
    cmask = cols < C
    w = tl.load(w_ptr + cols, mask=cmask, other=0.0)
    if d == 0:
        _carry_dir(tot_ptr, car_ptr, w, cols, cmask, b, B, C, NCH, False, MOMENTS, NF, BLOCK_N, BLOCK_C)
    else:
        _carry_dir(tot_ptr, car_ptr, w, cols, cmask, b, B, C, NCH, True, MOMENTS, NF, BLOCK_N, BLOCK_C)


@triton.jit
def _sums_at(base_ptr, extra_ptr, x1_ptr, x2_ptr, car_ptr, off, pos, cols, cmask, w, j, b, B, T, C, NCH,
             REVERSE: tl.constexpr, GRAD: tl.constexpr, MOMENTS: tl.constexpr, NF: tl.constexpr):
    """The complete exclusive sums at every row of chunk j: its carry plus the chunk's scan."""
    s_rb, s_ra, s_n1, s_n2, s_m1, s_m2, wt = _chunk_sums(base_ptr, extra_ptr, x1_ptr, x2_ptr, off, pos, cols, cmask,
                                                         w, T, C, REVERSE, GRAD, MOMENTS, False)
    plane = B * NCH * C
    src = car_ptr + (1 if REVERSE else 0) * NF * plane
    c_rb, c_ra, c_n1, c_n2, c_m1, c_m2 = _load_sums(src, ((b * NCH + j) * C + cols)[None, :], cmask[None, :],
                                                    plane, NF)
    return _plus(c_rb, c_ra, c_n1, c_n2, c_m1, c_m2, w[None, :], s_rb, s_ra, s_n1, s_n2, s_m1, s_m2, wt, MOMENTS)


@triton.jit
def _main_kernel(k_ptr, v_ptr, w_ptr, u_ptr, car_ptr, gy_ptr, y_ptr, gk_ptr, gv_ptr,
                 nlb_ptr, ln_ptr, g_ptr, gyy_ptr, gwu_ptr, B, T, C, NCH,
                 BACKWARD: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_C: tl.constexpr):
    """Phase 3 over (k, v): y (forward), or (BACKWARD) the diagonal parts of gk and gv,
    the output-side terms of the second backward pass, and per-chunk partials of gw, gu."""
    j, b, pos, cols, cmask, off, w = _tile(w_ptr, T, C, BLOCK_T, BLOCK_C)
    u = tl.load(u_ptr + cols, mask=cmask, other=0.0)
    rba, raa, na1, na2, ma1, ma2, _wa = _sums_at(k_ptr, k_ptr, v_ptr, v_ptr, car_ptr, off, pos, cols, cmask, w,
                                                 j, b, B, T, C, NCH, False, False, BACKWARD, 6 if BACKWARD else 4)
    rbb, rab, nb1, nb2, mb1, mb2, _wb = _sums_at(k_ptr, k_ptr, v_ptr, v_ptr, car_ptr, off, pos, cols, cmask, w,
                                                 j, b, B, T, C, NCH, True, False, BACKWARD, 6 if BACKWARD else 4)
    mask, idx, k, v = _rows(k_ptr, v_ptr, off, pos, cols, cmask, T, C)
    # mix of biwkv_common.h: the three parts relative to the largest
    tf = pos.to(tl.float32)[:, None]
    w2 = w[None, :]
    da, db = tf - raa, -tf - rab
    ck = u[None, :] + k
    xa = (rba - ck) - da * w2
    xb = (rbb - ck) - db * w2
    xab = (rba - rbb) - (da - db) * w2
    amax = (xa >= 0.0) & (xab >= 0.0)
    bmax = (xb >= 0.0) & (xab < 0.0)  # xab < 0 already rules amax out
    fa = tl.exp(tl.where(amax, 0.0, tl.where(bmax, xab, xa)))
    fb = tl.exp(tl.where(amax, -xab, tl.where(bmax, 0.0, xb)))
    fc = tl.exp(tl.where(amax, -xa, tl.where(bmax, -xb, 0.0)))
    den = fa * na2 + fb * nb2 + fc
    y = (fa * na1 + fb * nb1 + fc * v) / den
    if BACKWARD:
        g = tl.load(gy_ptr + idx, mask=mask, other=0.0) / den
        diag = fc * g
        gvd = diag * (v - y)
        # distance-weighted sums at this row: (x - ra) * n + m
        gwt = (fa * (da * na1 + ma1) + fb * (db * nb1 + mb1)) - y * (fa * (da * na2 + ma2) + fb * (db * nb2 + mb2))
        tl.store(gv_ptr + idx, diag, mask=mask)
        tl.store(gk_ptr + idx, gvd, mask=mask)
        # the largest log-weight at this row is lb - ln * w; the true g is g * e^{-(lb - ln w)}
        tl.store(nlb_ptr + idx, -tl.where(amax, rba, tl.where(bmax, rbb, ck)), mask=mask)
        tl.store(ln_ptr + idx, tl.where(amax, da, tl.where(bmax, db, 0.0)), mask=mask)
        tl.store(g_ptr + idx, g, mask=mask)
        tl.store(gyy_ptr + idx, g * y, mask=mask)
        part = gwu_ptr + (b * NCH + j) * C + cols
        tl.store(part, -tl.sum(tl.where(mask, g * gwt, 0.0), 0), mask=cmask)
        tl.store(part + B * NCH * C, tl.sum(tl.where(mask, gvd, 0.0), 0), mask=cmask)
    else:
        tl.store(y_ptr + idx, y, mask=mask)


@triton.jit
def _grad_kernel(k_ptr, v_ptr, w_ptr, car_ptr, gk_ptr, gv_ptr, nlb_ptr, ln_ptr, g_ptr, gyy_ptr,
                 B, T, C, NCH, BLOCK_T: tl.constexpr, BLOCK_C: tl.constexpr):
    """Phase 3 of the second backward pass: gv_i += sum_{t != i} W_ti g_t and
    gk_i += v_i * that - sum_{t != i} W_ti g_t y_t, with W_ti = e^{k_i} * (a term of
    the output-side sums evaluated at i)."""
    j, b, pos, cols, cmask, off, w = _tile(w_ptr, T, C, BLOCK_T, BLOCK_C)
    rba, raa, pa1, pa2, _ma1, _ma2, _wa = _sums_at(nlb_ptr, ln_ptr, g_ptr, gyy_ptr, car_ptr, off, pos, cols, cmask,
                                                   w, j, b, B, T, C, NCH, False, True, False, 4)
    rbb, rab, pb1, pb2, _mb1, _mb2, _wb = _sums_at(nlb_ptr, ln_ptr, g_ptr, gyy_ptr, car_ptr, off, pos, cols, cmask,
                                                   w, j, b, B, T, C, NCH, True, True, False, 4)
    mask, idx, k, v = _rows(k_ptr, v_ptr, off, pos, cols, cmask, T, C)
    tf = pos.to(tl.float32)[:, None]
    w2 = w[None, :]
    # <= 1 (a term of a denominator over its largest term), except in padded lanes
    ea = tl.exp(tl.where(mask, (k + rba) - (tf - raa) * w2, EMPTY))
    eb = tl.exp(tl.where(mask, (k + rbb) - (-tf - rab) * w2, EMPTY))
    gv = ea * pa1 + eb * pb1
    hv = ea * pa2 + eb * pb2
    tl.store(gv_ptr + idx, tl.load(gv_ptr + idx, mask=mask, other=0.0) + gv, mask=mask)
    tl.store(gk_ptr + idx, tl.load(gk_ptr + idx, mask=mask, other=0.0) + (v * gv - hv), mask=mask)


def _grid(B: int, T: int, C: int, blocks: tuple[int, ...]) -> tuple[int, int, int]:
    return triton.cdiv(T, blocks[0]), B, triton.cdiv(C, blocks[1])


def _carries(base, extra, x1, x2, w, grad: bool, moments: bool, blocks) -> torch.Tensor:
    """Phases 1 and 2 for one set of terms: the carry of every chunk, both directions."""
    B, T, C = base.shape
    grid = _grid(B, T, C, blocks)
    nf = 6 if moments else 4
    tot = torch.empty((2, nf, B, grid[0], C), device=base.device, dtype=torch.float32)
    _totals_kernel[grid](base, extra, x1, x2, w, tot, B, T, C, grid[0],
                         GRAD=grad, MOMENTS=moments, NF=nf, BLOCK_T=blocks[0], BLOCK_C=blocks[1], num_warps=blocks[3])
    car = torch.empty_like(tot)
    _carry_kernel[(B, grid[2], 2)](tot, car, w, B, C, grid[0], MOMENTS=moments, NF=nf,
                                   BLOCK_N=blocks[2], BLOCK_C=blocks[1], num_warps=4)
    return car


def forward(w: torch.Tensor, u: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
            blocks: tuple[int, ...] = BLOCKS) -> torch.Tensor:
    """y for contiguous float32 inputs (w, u: C; k, v: B x T x C) on one device."""
    B, T, C = k.shape
    y = torch.empty_like(k)
    if y.numel() == 0:  # a launch needs a non-empty grid
        return y
    car = _carries(k, k, v, v, w, False, False, blocks)
    _main_kernel[_grid(B, T, C, blocks)](k, v, w, u, car, k, y, y, y, y, y, y, y, y, B, T, C, car.shape[3],
                                         BACKWARD=False, BLOCK_T=blocks[0], BLOCK_C=blocks[1], num_warps=blocks[3])
    return y


def backward(w: torch.Tensor, u: torch.Tensor, k: torch.Tensor, v: torch.Tensor, gy: torch.Tensor,
             blocks: tuple[int, ...] = BLOCKS) -> tuple[torch.Tensor, ...]:
    """(gw, gu, gk, gv) for contiguous float32 inputs, by chunked recomputation."""
    B, T, C = k.shape
    if k.numel() == 0:
        return torch.zeros_like(w), torch.zeros_like(u), torch.zeros_like(k), torch.zeros_like(v)
    grid = _grid(B, T, C, blocks)
    car = _carries(k, k, v, v, w, False, True, blocks)
    gk, gv, nlb, ln, g, gyy = (torch.empty_like(k) for _ in range(6))
    gwu = torch.empty((2, B * grid[0], C), device=k.device, dtype=torch.float32)
    _main_kernel[grid](k, v, w, u, car, gy, gk, gk, gv, nlb, ln, g, gyy, gwu, B, T, C, grid[0],
                       BACKWARD=True, BLOCK_T=blocks[0], BLOCK_C=blocks[1], num_warps=blocks[3])
    car = _carries(nlb, ln, g, gyy, w, True, False, blocks)
    _grad_kernel[grid](k, v, w, car, gk, gv, nlb, ln, g, gyy, B, T, C, grid[0],
                       BLOCK_T=blocks[0], BLOCK_C=blocks[1], num_warps=blocks[3])
    gw, gu = gwu.double().sum(1).float()
    return gw, gu, gk, gv


def _on(device: torch.device):
    """Triton launches on the current CUDA device: make it the tensors' one."""
    return torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext()


class _BiWKVTriton(torch.autograd.Function):
    """Autograd wrapper: forward keeps only the inputs, backward recomputes in chunks."""

    @staticmethod
    def forward(ctx, w, u, k, v, blocks):
        ctx.blocks = blocks
        ctx.save_for_backward(w, u, k, v)
        with _on(k.device):
            return forward(w, u, k, v, blocks)

    @staticmethod
    def backward(ctx, gy):
        w, u, k, v = ctx.saved_tensors
        with _on(k.device):
            gw, gu, gk, gv = backward(w, u, k, v, gy.float().contiguous(), ctx.blocks)
        return gw, gu, gk, gv, None


def biwkv_triton(w: torch.Tensor, u: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                 blocks: tuple[int, ...] = BLOCKS) -> torch.Tensor:
    """BiWKV through the Triton kernels, differentiable; float32 inside, the promoted dtype
    of k and v out.  Needs a GPU, or ``TRITON_INTERPRET=1`` for CPU tensors."""
    out_dtype = torch.promote_types(k.dtype, v.dtype)
    dev = k.device
    w, u, k, v = (x.to(device=dev, dtype=torch.float32).contiguous() for x in (w, u, k, v))
    return _BiWKVTriton.apply(w, u, k, v, blocks).to(out_dtype)
