"""Arithmetic 2 of the portable path (lalic_cli.portable.int_ops, format version 4): the
integer grid's bounds, sums equal to a pure int64 reference at the bound, the C++ kernels
against the PyTorch reference bit for bit, the same bits under 1 and 2 threads (child
processes) and under another summation order, and the error against float."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lalic_cli.portable import int_ops as I
from lalic_cli.portable import ops


def rand(*shape, seed=0, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=torch.float64) * scale


def same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.shape == b.shape and torch.equal(a.contiguous().view(torch.int64), b.contiguous().view(torch.int64))


def rel_err(got, want):
    return float((got - want).abs().max() / want.abs().max())


@pytest.fixture(scope="module")
def kernel():
    from lalic_cli.kernels import load_extension

    ext = load_extension("exact")
    if ext is None:
        pytest.skip("the portable kernels could not be built here")
    return ext


def test_weights_fill_the_bound_and_no_more():
    """|W| <= 2^14 and sum |W| <= L1_MAX per output channel, with the largest exponent
    that keeps both (one more would break one of them)."""
    w = torch.cat([rand(5, 300, seed=1), rand(3, 300, seed=2) * 1e-3, torch.zeros(1, 300)])
    q = I.IntWeight(w, None)
    assert q.rows.abs().max() <= 2**14
    assert bool((q.rows.abs().sum(1) <= I.L1_MAX).all())
    for n in range(8):
        finer = torch.round(w[n].to(torch.float64) * 2.0 ** (int(q.e[n]) + 1))
        assert finer.abs().max() > 2**14 or finer.abs().sum() > I.L1_MAX
    assert float(q.rows[8].abs().sum()) == 0.0


def test_rows_are_quantised_each_on_its_own_exponent():
    x = torch.cat([rand(4, 50, seed=3) * 1e-6, rand(4, 50, seed=4) * 1e6, torch.zeros(1, 50)])
    xq, s = I.quantize_rows(x)
    assert xq.abs().max() <= 2**14
    assert bool((xq[:8].abs().amax(1) > 2**13).all())
    assert bool(((xq * ops.pow2(-s)[:, None] - x).abs() <= ops.pow2(-s - 1)[:, None]).all())


def _at_the_bound():
    """Rows of x whose integers are all +-2^14 and weight rows whose sum |W| is exactly
    L1_MAX: every output is +-2^14 * L1_MAX = 2147467264, the largest sum the bound allows."""
    big = 1.0 - 2.0**-20  # rounds to 2^14 on the exponent of a maximum just below 1
    w = torch.full((4, 8), big, dtype=torch.float64)
    w[:, 7] = 16383 / 16384  # 7 * 16384 + 16383 = L1_MAX
    w[1] = -w[1]
    w[2, ::2] = -w[2, ::2]
    x = torch.full((6, 8), big, dtype=torch.float64)
    x[1] = -x[1]
    x[2:] = x[2:] * torch.sign(rand(4, 8, seed=5))
    return x, w


def test_sums_at_the_bound_equal_the_int64_reference(kernel):
    x, w = _at_the_bound()
    q = I.IntWeight(w, None)
    xq, s = I.quantize_rows(x)
    assert int(q.rows.abs().sum(1).max()) == I.L1_MAX and int(xq.abs().max()) == 2**14
    want = xq.numpy().astype(np.int64) @ q.rows.numpy().astype(np.int64).T
    assert np.abs(want).max() == 2**14 * I.L1_MAX < 2**31
    got = kernel.int_gemm(I._rows16(xq), q.packed("panels"), 4)
    assert np.array_equal(got.numpy().astype(np.int64), want)
    y = I.linear(x, q)
    assert same_bits(y, torch.from_numpy(want.astype(np.float64)) * ops.pow2(-(s[:, None] + q.e[None, :])))


@pytest.mark.parametrize("k", [1, 2, 31, 128, 1600, 4099])
def test_random_sums_equal_the_int64_reference(kernel, k):
    """Random integers with the largest exponents: the kernel's int32 sums (every
    blocking, tail and panel) are the int64 ones."""
    x, w = rand(37, k, seed=6), rand(70, k, seed=7)
    q = I.IntWeight(w, None)
    xq, _ = I.quantize_rows(x)
    want = xq.numpy().astype(np.int64) @ q.rows.numpy().astype(np.int64).T
    got = kernel.int_gemm(I._rows16(xq), q.packed("panels"), 70).numpy()
    assert np.array_equal(got, want)


@pytest.mark.parametrize("acts", [("none", "none", "sigmoid"), ("relu_square", "sigmoid", "none")])
def test_linear_kernel_gives_the_reference_bits(kernel, acts):
    x = rand(2, 45, 130, seed=8, scale=3.0)
    parts = [I.IntWeight(rand(n, 130, seed=9 + n) * 0.1, rand(n, seed=20 + n) if n != 33 else None) for n in (70, 33, 17)]
    stack = I.IntStack(parts)
    a = I.linear_many(x, stack, acts, impl="torch")
    b = I.linear_many(x, stack, acts, impl="kernel")
    assert all(same_bits(p, q) for p, q in zip(a, b))
    # a quantised part carries the next layer's input: the same result as from float64
    h = I.linear_many(x, stack, acts, quantised=(True, False, False), impl="kernel")[0]
    assert isinstance(h, I.QRows)
    nxt = I.IntWeight(rand(9, 70, seed=30), rand(9, seed=31))
    assert same_bits(I.linear(h, nxt, impl="kernel"), I.linear(a[0], nxt, impl="torch"))
    assert same_bits(I.linear(h, nxt, impl="torch"), I.linear(a[0], nxt, impl="torch"))


def test_linear_epilogue_gives_the_reference_bits(kernel):
    x, gate = rand(3, 40, 64, seed=32), rand(3, 40, 64, seed=33)
    w = I.IntWeight(rand(48, 64, seed=34) * 0.2, rand(48, seed=35))
    res, gamma, og = rand(3, 40, 48, seed=36), rand(48, seed=37), rand(3, 40, 48, seed=38)
    kw = dict(gate=gate, residual=res, gamma=gamma, out_gate=og)
    a, b = I.linear(x, w, **kw, impl="torch"), I.linear(x, w, **kw, impl="kernel")
    assert same_bits(a, b)
    want = res + gamma * (og * I.linear(x * gate, w, impl="torch"))
    assert same_bits(a, want)


def test_linear_is_independent_of_summation_order():
    x, w = rand(33, 257, seed=40), rand(19, 257, seed=41)
    perm = torch.randperm(257, generator=torch.Generator().manual_seed(0))
    assert same_bits(I.linear(x, I.IntWeight(w)), I.linear(x[:, perm], I.IntWeight(w[:, perm])))


@pytest.mark.parametrize("k,stride,padding", [(1, 1, 0), (3, 1, 1), (5, 1, 2), (5, 2, 2), (2, 2, 0)])
def test_conv2d_kernel_gives_the_reference_bits(kernel, k, stride, padding):
    x = rand(2, 19, 13, 11, seed=42)
    w = I.IntWeight(rand(24, 19, k, k, seed=43) * 0.2, rand(24, seed=44))
    a, b = I.conv2d(x, w, stride, padding, impl="torch"), I.conv2d(x, w, stride, padding, impl="kernel")
    assert same_bits(a, b)
    want = F.conv2d(x, w.q * ops.pow2(-w.e)[:, None, None, None], w.bias, stride, padding)
    assert rel_err(a, want) < 1e-3


@pytest.mark.parametrize("k,stride,padding,out_pad", [(5, 2, 2, 1), (3, 2, 1, 1), (4, 2, 1, 0), (3, 3, 0, 0), (3, 2, 0, 0)])
def test_conv_transpose2d_kernel_gives_the_reference_bits(kernel, k, stride, padding, out_pad):
    x = rand(2, 12, 5, 7, seed=45)
    w = I.IntWeight(rand(12, 20, k, k, seed=46) * 0.2, rand(20, seed=47), out_dim=1)
    a = I.conv_transpose2d(x, w, stride, padding, out_pad, impl="torch")
    b = I.conv_transpose2d(x, w, stride, padding, out_pad, impl="kernel")
    assert same_bits(a, b)
    want = F.conv_transpose2d(x, w.q * ops.pow2(-w.e)[None, :, None, None], w.bias, stride, padding, out_pad)
    assert rel_err(a, want) < 1e-3


def test_linear_and_conv_match_float():
    """Activations keep 15 bits of their row's maximum, weights about log2(L1_MAX / sum |w| *
    max |w|) bits, fewer the longer the row: ~12 bits at 96 terms, ~10 at 400."""
    x, w, b = rand(64, 96, seed=48, scale=7.0), rand(40, 96, seed=49) * 0.1, rand(40, seed=50)
    assert rel_err(I.linear(x, I.IntWeight(w, b)), x @ w.t() + b) < 1e-3
    img, kw = rand(1, 16, 12, 10, seed=51), rand(8, 16, 5, 5, seed=52) * 0.1
    assert rel_err(I.conv2d(img, I.IntWeight(kw), 1, 2), F.conv2d(img, kw, padding=2)) < 3e-3


@pytest.mark.parametrize("hw", [(13, 11), None])
def test_shift_kernel_gives_the_reference_bits(kernel, hw):
    x = rand(2, 143, 40, seed=53)
    w = rand(40, 5, 5, seed=54) if hw else rand(40, 1, 5, seed=55)
    a, b = I.shift(x, w, hw, impl="torch"), I.shift(x, w, hw, impl="kernel")
    assert same_bits(a, b)
    h, wd = hw or (1, 143)
    conv = F.conv2d(x.transpose(1, 2).reshape(2, 40, h, wd), w[:, None], padding=(w.shape[1] // 2, 2), groups=40)
    assert rel_err(a, conv.reshape(2, 40, -1).transpose(1, 2)) < 1e-14


@pytest.mark.parametrize("T,C,decay,keys", [(300, 17, 0.1, 4.0), (200, 5, 30.0, 4.0), (100, 11, 3.0, 30.0), (64, 9, 600.0, 4.0)])
def test_biwkv_kernel_gives_the_reference_bits(kernel, T, C, decay, keys):
    """Recurrence channels, chunked channels (keys spanning more than 80, a decay above
    500) and blocks that mix both."""
    from lalic_cli.ops.biwkv import biwkv_reference

    w, u = rand(C, seed=56) * decay / T, rand(C, seed=57) / T
    k, v = rand(2, T, C, seed=58, scale=keys), rand(2, T, C, seed=59)
    a, b = I.biwkv(w, u, k, v, impl="torch"), I.biwkv(w, u, k, v, impl="kernel")
    assert same_bits(a, b)
    assert rel_err(a, biwkv_reference(w, u, k, v)) < 1e-5


def test_exp_with_nine_terms_is_the_reference_and_close_to_libm(kernel):
    x = torch.linspace(-700, 700, 20001, dtype=torch.float64)
    assert same_bits(ops.exp(x, "torch", 9), ops.exp(x, "kernel", 9))
    assert same_bits(ops.sigmoid(x, "torch", 9), ops.sigmoid(x, "kernel", 9))
    assert float(((ops.exp(x, terms=9) - torch.exp(x)) / torch.exp(x)).abs().max()) < 3e-10


def test_non_finite_input_is_an_error():
    w = I.IntWeight(rand(4, 8, seed=60))
    for impl in ("torch", None):
        with pytest.raises(ValueError, match="non-finite"):
            I.linear(torch.tensor([[1.0] * 7 + [float("nan")]], dtype=torch.float64), w, impl=impl)


_CHILD = r"""
import hashlib, sys, torch
from lalic_cli.portable import int_ops as I
def rand(*shape, seed):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
h = hashlib.sha256()
x = rand(1, 1536, 128, seed=1) * 3
stack = I.IntStack([I.IntWeight(rand(1024, 128, seed=2) * 0.1, rand(1024, seed=3)), I.IntWeight(rand(128, 128, seed=4) * 0.1)])
hid, r = I.linear_many(x, stack, ("relu_square", "sigmoid"), quantised=(True, False))
out = I.linear(hid, I.IntWeight(rand(128, 1024, seed=5) * 0.05), out_gate=r, residual=x, gamma=rand(128, seed=6))
img = rand(1, 64, 32, 48, seed=7)
conv = I.conv2d(img, I.IntWeight(rand(128, 64, 5, 5, seed=8) * 0.05, rand(128, seed=9)), 1, 2)
up = I.conv_transpose2d(img, I.IntWeight(rand(64, 32, 5, 5, seed=10) * 0.05, None, out_dim=1), 2, 2, 1)
sh = I.shift(x, rand(128, 5, 5, seed=11), (32, 48))
y = I.biwkv(rand(128, seed=12) * 3 / 1536, rand(128, seed=13) / 1536, x, rand(1, 1536, 128, seed=14))
for t in (hid.q, r, out, conv, up, sh, y):
    h.update(t.contiguous().numpy().tobytes())
print(h.hexdigest())
"""


def test_results_do_not_depend_on_thread_count():
    """The same bits with 1 and with 2 threads, each in its own process (OpenMP reads
    OMP_NUM_THREADS at start), at the entropy path's sizes."""
    digests = []
    for threads in ("1", "2"):
        env = dict(os.environ, OMP_NUM_THREADS=threads)
        r = subprocess.run([sys.executable, "-c", _CHILD], env=env, capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, r.stderr[-2000:]
        digests.append(r.stdout.strip().splitlines()[-1])
    assert digests[0] == digests[1] and len(digests[0]) == 64
