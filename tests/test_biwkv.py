"""BiWKV: the PyTorch path, the CPU kernel and (when a GPU is present) the CUDA kernel
against the naive float64 formula, plus gradients and dispatch."""

from __future__ import annotations

import functools
import math
import warnings

import pytest
import torch

import lalic_cli.ops.biwkv as bw
from lalic_cli import kernels
from lalic_cli.ops.biwkv import biwkv, biwkv_reference, biwkv_torch

TS = [1, 2, 31, 32, 33, 1000, 4097]
# decay kinds: "big": w ~ N(0, 1) so |w| * T reaches the thousands; "model": w = decay / T
# as in the model; "huge": |w| ~ 20, exponents far beyond float range if not shifted.
WKINDS = ["big", "model", "huge"]


@functools.lru_cache(maxsize=None)
def case(B: int, T: int, C: int, wkind: str, seed: int = 0, kscale: float = 30.0):
    """Inputs (float32 values held in float64, so every path sees the same numbers) and
    the naive reference output."""
    g = torch.Generator().manual_seed(seed * 1000 + T)
    w = torch.randn(C, generator=g) * {"big": 1.0, "model": 3.0 / T, "huge": 20.0}[wkind]
    u = torch.randn(C, generator=g)
    k = (torch.rand(B, T, C, generator=g) * 2 - 1) * kscale
    v = torch.randn(B, T, C, generator=g)
    xs = tuple(x.double() for x in (w, u, k, v))
    return xs, biwkv_reference(*xs)


def sizes(T: int) -> tuple[int, int]:
    """(B, C): C = 17 exercises a full 16-channel block of the CPU kernel plus a tail; the
    largest T keeps C small because the O(T^2) reference dominates the test time."""
    return (2, 3) if T > 1000 else (2, 17)


def cpu_ext():
    ext = kernels.load_extension("cpu")
    if ext is None:
        pytest.skip("the CPU BiWKV kernel could not be built here")
    return ext


def assert_rel_close(got: torch.Tensor, want: torch.Tensor, rel: float, what: str = "") -> None:
    """max |got - want| <= rel * max|want| + 1e-12: errors measured against the scale of the
    whole tensor (sums with cancellation make elementwise relative errors meaningless); the
    1e-12 covers tensors that are exactly 0 in theory (gw for T <= 2)."""
    err = (got.double() - want.double()).abs().max().item()
    scale = want.abs().max().item()
    assert err <= rel * scale + 1e-12, f"{what}: max error {err:.3e} > {rel:.1e} * {scale:.3e}"


def test_reference_is_the_formula():
    (w, u, k, v), ref = case(2, 6, 3, "big", kscale=3.0)
    B, T, C = k.shape
    for b in range(B):
        for t in range(T):
            for c in range(C):
                num = den = 0.0
                for i in range(T):
                    e = math.exp(u[c] + k[b, t, c]) if i == t else math.exp(-(abs(t - i) - 1) * w[c] + k[b, i, c])
                    num += e * v[b, i, c].item()
                    den += e
                assert ref[b, t, c].item() == pytest.approx(num / den, rel=1e-12, abs=1e-12)


@pytest.mark.parametrize("wkind", WKINDS)
@pytest.mark.parametrize("T", TS)
def test_torch_forward(T, wkind):
    B, C = sizes(T)
    xs, ref = case(B, T, C, wkind)
    y = biwkv_torch(*xs)
    assert y.dtype == torch.float64 and torch.isfinite(y).all()
    # float64 throughout; the scans carry exponents of size |w| * T (up to ~1e5 here),
    # which costs a few digits: observed <~ 1e-11, allowed 1e-9.
    assert_rel_close(y, ref, 1e-9, "torch path")


@pytest.mark.parametrize("wkind", WKINDS)
@pytest.mark.parametrize("T", TS)
def test_cpu_kernel_forward(T, wkind):
    ext = cpu_ext()
    B, C = sizes(T)
    xs, ref = case(B, T, C, wkind)
    y = ext.forward(*(x.float().contiguous() for x in xs))
    assert torch.isfinite(y).all()
    # float32: the log-weights that matter (|x| <~ 100) are formed with ~1e-5 absolute
    # error, i.e. ~1e-5 relative error of the weights of a weighted mean of v; the sums
    # are accumulated in double.  Observed <~ 6e-7 of max|y|, allowed 2e-5.
    assert_rel_close(y, ref, 2e-5, "cpu kernel")


@pytest.mark.parametrize("T", [1, 33, 1000, 4097])
def test_cpu_kernel_fast_path(T):
    """Keys within 80 of each other and |w| T small: the kernel's one-exponential path
    runs, and meets the same bound against the formula as the exact scheme."""
    ext = cpu_ext()
    B, C = sizes(T)
    xs, ref = case(B, T, C, "model", kscale=30.0)
    args = [x.float().contiguous() for x in xs]
    fast, exact = ext.forward(*args), ext.forward(*args, exact=True)
    assert_rel_close(fast, ref, 2e-5, "fast path")
    assert_rel_close(exact, ref, 2e-5, "exact scheme")
    if T > 1:
        assert not torch.equal(fast, exact), "the fast path did not run"


@pytest.mark.parametrize("kscale, wkind", [(50.0, "model"), (3.0, "huge"), (3.0, "big")])
def test_cpu_kernel_falls_back_to_the_exact_scheme(kscale, wkind):
    """Keys spread over more than 80, or |w| T beyond 500: the exact scheme, bit for bit."""
    ext = cpu_ext()
    xs, ref = case(2, 1000, 17, wkind, kscale=kscale)
    args = [x.float().contiguous() for x in xs]
    y = ext.forward(*args)
    assert torch.equal(y, ext.forward(*args, exact=True))
    assert_rel_close(y, ref, 2e-5, "fallback")


def test_cpu_kernel_fast_path_nan_keys_fall_back():
    ext = cpu_ext()
    (w, u, k, v), _ = case(1, 100, 16, "model", kscale=3.0)
    k = k.float().clone()
    k[0, 50, 3] = float("nan")
    args = [w.float(), u.float(), k, v.float()]
    y, exact = ext.forward(*args), ext.forward(*args, exact=True)
    assert torch.equal(y.isnan(), exact.isnan())
    torch.testing.assert_close(y.nan_to_num(), exact.nan_to_num(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("wkind", ["big", "model"])
@pytest.mark.parametrize("kscale", [3.0, 30.0])
def test_torch_gradcheck(wkind, kscale):
    xs, _ = case(2, 7, 3, wkind, kscale=kscale)
    inputs = tuple(x.clone().requires_grad_() for x in xs)
    assert torch.autograd.gradcheck(biwkv_torch, inputs, eps=1e-6, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("wkind", ["model", "big"])
@pytest.mark.parametrize("T", TS)
def test_scan_forward(T, wkind):
    """The prefix-sum path against the naive formula wherever its spread bound holds."""
    B, C = sizes(T)
    xs, ref = case(B, T, C, wkind)
    if bw.scan_spread(xs[0], xs[2]) > bw.SCAN_MAX_SPREAD:
        pytest.skip("outside the scan path's spread bound (covered by the dispatch test)")
    assert_rel_close(bw.biwkv_scan(*xs), ref, 1e-12, "scan path")


@pytest.mark.parametrize("kscale", [3.0, 30.0])
def test_scan_gradcheck(kscale):
    xs, _ = case(2, 7, 3, "model", kscale=kscale)
    inputs = tuple(x.clone().requires_grad_() for x in xs)
    assert torch.autograd.gradcheck(bw.biwkv_scan, inputs, eps=1e-6, atol=1e-6, rtol=1e-5)


def test_scan_dispatch_falls_back_beyond_its_bound(monkeypatch):
    """Keys spread by 2000 would underflow the shifted float64 sums: the exact log-space path runs."""
    monkeypatch.setenv("LALIC_BIWKV", "scan")
    xs, ref = case(1, 64, 3, "model", kscale=1000.0)
    assert bw.scan_spread(xs[0], xs[2]) > bw.SCAN_MAX_SPREAD
    called = []
    monkeypatch.setattr(bw, "biwkv_torch", lambda *a: called.append(1) or bw.biwkv_reference(*a))
    assert_rel_close(biwkv(*xs), ref, 1e-12, "scan dispatch")
    assert called


def torch_grads(xs, gy):
    inputs = [x.clone().requires_grad_() for x in xs]
    biwkv_torch(*inputs).backward(gy)
    return [x.grad for x in inputs]


def kernel_grads(xs, gy, device="cpu"):
    inputs = [x.to(device=device, dtype=torch.float32).requires_grad_() for x in xs]
    biwkv(*inputs, impl="kernel").backward(gy.to(device=device, dtype=torch.float32))
    return [x.grad.cpu() for x in inputs]


@pytest.mark.parametrize("wkind", WKINDS)
@pytest.mark.parametrize("T", [1, 2, 33, 1000, 4097])
def test_cpu_kernel_backward(T, wkind):
    cpu_ext()
    B, C = sizes(T)
    xs, _ = case(B, T, C, wkind)
    gy = torch.randn(B, T, C, generator=torch.Generator().manual_seed(T), dtype=torch.float64)
    want = torch_grads(xs, gy)
    got = kernel_grads(xs, gy)
    for name, a, b in zip("wukv", got, want):
        assert a.shape == b.shape and torch.isfinite(a).all()
        # Same ~1e-5 relative error of the float32 weights as the forward pass; gw sums
        # O(B*T) terms with distance factors up to T and cancellation between
        # num and y*den.  Observed <~ 1e-5 of the largest entry, allowed 2e-4.
        assert_rel_close(a, b, 2e-4, f"grad {name}")


@pytest.mark.parametrize("T", [2, 33, 1000, 4097])
def test_cpu_kernel_fast_backward(T):
    """Where the forward's fast path applies the backward takes its own (plain decaying
    double sums); it must meet the exact scheme's bound against the formula's gradients."""
    ext = cpu_ext()
    B, C = sizes(T)
    xs, _ = case(B, T, C, "model", kscale=30.0)
    gy = torch.randn(B, T, C, generator=torch.Generator().manual_seed(T + 1), dtype=torch.float64)
    args = [x.float().contiguous() for x in xs]
    fast = ext.backward(*args, gy.float())
    exact = ext.backward(*args, gy.float(), exact=True)
    want = torch_grads(xs, gy)
    for name, a, e, b in zip("wukv", fast, exact, want):
        assert_rel_close(a, b, 2e-4, f"fast grad {name}")
        assert_rel_close(e, b, 2e-4, f"exact grad {name}")
    assert not torch.equal(fast[2], exact[2]), "the fast backward did not run"


@pytest.mark.parametrize("kscale, wkind", [(50.0, "model"), (3.0, "huge")])
def test_cpu_kernel_backward_falls_back_to_the_exact_scheme(kscale, wkind):
    ext = cpu_ext()
    xs, _ = case(2, 1000, 17, wkind, kscale=kscale)
    gy = torch.randn(2, 1000, 17, generator=torch.Generator().manual_seed(9))
    args = [x.float().contiguous() for x in xs]
    for a, e in zip(ext.backward(*args, gy), ext.backward(*args, gy, exact=True)):
        assert torch.equal(a, e)


@pytest.mark.parametrize("threads", [1, 4])
def test_cpu_kernel_block_widths(threads):
    # the kernel uses 16-channel blocks, or 8-channel blocks when that leaves threads idle:
    # with B=1, C=40, one thread takes the 16-wide path, four threads the 8-wide one
    ext = cpu_ext()
    (w, u, k, v), ref = case(1, 300, 40, "big")
    gy = torch.randn(1, 300, 40, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        y = ext.forward(*(x.float() for x in (w, u, k, v)))
        got = kernel_grads((w, u, k, v), gy)
    finally:
        torch.set_num_threads(old)
    assert_rel_close(y, ref, 2e-5, "forward")
    for name, a, b in zip("wukv", got, torch_grads((w, u, k, v), gy)):
        assert_rel_close(a, b, 2e-4, f"grad {name}")


def test_kernel_path_mixed_dtypes_and_layouts():
    cpu_ext()
    (w, u, k, v), ref = case(2, 33, 17, "big")
    kt = k.float().transpose(1, 2).contiguous().transpose(1, 2)  # non-contiguous
    assert not kt.is_contiguous()
    y = biwkv(w.float(), u.float(), kt, v.float(), impl="kernel")
    assert y.dtype == torch.float32
    assert_rel_close(y, ref, 2e-5, "non-contiguous k")
    y64 = biwkv(w, u, k, v, impl="kernel")
    assert y64.dtype == torch.float64
    yb = biwkv(w.float(), u.float(), k.bfloat16(), v.bfloat16(), impl="kernel")
    assert yb.dtype == torch.bfloat16


def test_extreme_values_are_finite():
    # |w| * T = 5e4 and |k| = 80: every exponential would overflow unshifted
    C, T = 4, 1000
    w = torch.tensor([50.0, -50.0, 1e-6, -1e-6], dtype=torch.float64)
    u = torch.tensor([80.0, -80.0, 0.0, 5.0], dtype=torch.float64)
    k = (torch.rand(2, T, C, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * 2 - 1) * 80
    v = torch.randn(2, T, C, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    ref = biwkv_reference(w, u, k, v)
    assert torch.isfinite(ref).all()
    assert_rel_close(biwkv_torch(w, u, k, v), ref, 1e-9, "torch path")
    if kernels.load_extension("cpu") is not None:
        y = biwkv(*(x.float() for x in (w, u, k, v)), impl="kernel")
        assert_rel_close(y, ref, 2e-5, "cpu kernel")


# ------------------------------------------------------------------ dispatch


def test_cpu_dispatch_uses_kernel(monkeypatch):
    cpu_ext()
    monkeypatch.delenv("LALIC_BIWKV", raising=False)

    def forbidden(*args):
        raise AssertionError("the torch path was used")

    monkeypatch.setattr(bw, "biwkv_torch", forbidden)
    xs, ref = case(2, 31, 5, "model")
    y = biwkv(*(x.float() for x in xs))
    assert_rel_close(y, ref, 2e-5, "dispatch")


@pytest.mark.parametrize("how", ["impl", "env"])
def test_force_torch_path(monkeypatch, how):
    calls = []
    real = bw.biwkv_torch
    monkeypatch.setattr(bw, "biwkv_torch", lambda *a: calls.append(1) or real(*a))
    xs, ref = case(2, 31, 5, "big")
    if how == "env":
        monkeypatch.setenv("LALIC_BIWKV", "torch")
        y = biwkv(*xs)
    else:
        monkeypatch.setenv("LALIC_BIWKV", "kernel")  # the keyword wins over the environment
        y = biwkv(*xs, impl="torch")
    assert calls == [1]
    assert_rel_close(y, ref, 1e-9, "forced torch path")


def test_fallback_without_kernel(monkeypatch):
    monkeypatch.delenv("LALIC_BIWKV", raising=False)
    monkeypatch.setattr(bw, "_kernel_for", lambda device: None)
    xs, ref = case(2, 31, 5, "big")
    assert_rel_close(biwkv(*(x.float() for x in xs)), ref, 1e-6, "fallback")
    with pytest.raises(RuntimeError):
        biwkv(*xs, impl="kernel")
    with pytest.raises(ValueError):
        biwkv(*xs, impl="fast")


def test_loader_warns_once_and_memoises(monkeypatch):
    attempts = []

    def failing_build(kind):
        attempts.append(kind)
        raise RuntimeError("compiler exploded\nlong log that must not be shown")

    monkeypatch.setattr(kernels, "_modules", {})
    monkeypatch.setattr(kernels, "_build", failing_build)
    with pytest.warns(RuntimeWarning) as record:
        assert kernels.load_extension("cpu") is None
    assert [str(r.message) for r in record] == [
        "lalic: BiWKV cpu kernel unavailable (compiler exploded); using the PyTorch path"
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert kernels.load_extension("cpu") is None
    assert attempts == ["cpu"]
    with pytest.raises(ValueError):
        kernels.load_extension("tpu")


def test_a_build_says_so_once(monkeypatch, tmp_path, capsys):
    """A first build takes about a minute: one note on stderr for all the kinds built."""
    from torch.utils import cpp_extension

    monkeypatch.setenv("LALIC_CACHE", str(tmp_path))
    monkeypatch.setattr(kernels, "_modules", {})
    monkeypatch.setattr(kernels, "_said", set())
    built = []
    monkeypatch.setattr(cpp_extension, "load", lambda name, **_: built.append(name) or object())
    assert kernels.load_extension("cpu") is not None and kernels.load_extension("exact") is not None
    out, err = capsys.readouterr()
    assert out == "" and err.splitlines().count(kernels.NOTE) == 1
    assert len(built) == 2 and len(list((tmp_path / "kernels").glob("*/built.ok"))) == 2


_BROKEN_CXX = """#!/bin/sh
echo "$@" >> "{calls}"
for a in "$@"; do [ "$a" = "--version" ] && exec c++ "$@"; done
echo "broken-cxx: internal compiler error" >&2
exit 1
"""


def test_a_failed_build_is_remembered_for_its_compiler(tmp_path):
    """With a compiler that fails, ``lalic encode`` still works (PyTorch path) and says so in
    one line; the next run does not call that compiler again, another compiler is tried."""
    import os
    import subprocess
    import sys

    from PIL import Image

    calls = tmp_path / "calls"
    cxx = tmp_path / "cxx"
    cxx.write_text(_BROKEN_CXX.format(calls=calls))
    cxx.chmod(0o755)
    Image.new("RGB", (40, 24), (90, 140, 200)).save(tmp_path / "a.png")
    env = {**os.environ, "CXX": str(cxx), "LALIC_CACHE": str(tmp_path / "cache")}  # not the real cache

    def encode() -> list[str]:
        r = subprocess.run([sys.executable, "-m", "lalic_cli.cli", "encode", "a.png", "-f"], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, r.stderr
        assert r.stdout.startswith("a.png -> a.lal")
        return r.stderr.splitlines()

    note, warning = encode()
    assert note == kernels.NOTE
    assert warning.startswith("lalic: BiWKV ") and "failed; log: " in warning and warning.endswith("PyTorch path")
    logs = list((tmp_path / "cache" / "kernels").glob("*/failed-*.log"))
    assert logs and "broken-cxx: internal compiler error" in logs[0].read_text()
    tried = calls.read_text()
    [again] = encode()
    assert "failed before; log: " in again and again.endswith("delete it to retry); using the PyTorch path")
    assert calls.read_text() == tried
    cxx.write_text(cxx.read_text() + "# a new version\n")
    assert encode()[0] == kernels.NOTE
    assert len(calls.read_text()) > len(tried)


def test_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("LALIC_CACHE", str(tmp_path / "c"))
    assert kernels.cache_dir() == tmp_path / "c" / "kernels"
    monkeypatch.delenv("LALIC_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert kernels.cache_dir() == tmp_path / "x" / "lalic" / "kernels"


# ------------------------------------------------------------------ CUDA

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


def cuda_ext():
    ext = kernels.load_extension("cuda")
    if ext is None:
        pytest.skip("the CUDA BiWKV kernel could not be built here")
    return ext


@cuda
@pytest.mark.parametrize("wkind", WKINDS)
@pytest.mark.parametrize("T", TS)
def test_cuda_kernel_forward(T, wkind):
    ext = cuda_ext()
    B, C = sizes(T)
    xs, ref = case(B, T, C, wkind)
    y = ext.forward(*(x.cuda().float().contiguous() for x in xs)).cpu()
    assert_rel_close(y, ref, 2e-5, "cuda kernel")  # same arithmetic as the CPU kernel


@cuda
@pytest.mark.parametrize("wkind", WKINDS)
@pytest.mark.parametrize("T", [1, 2, 33, 1000, 4097])
def test_cuda_kernel_backward(T, wkind):
    cuda_ext()
    B, C = sizes(T)
    xs, _ = case(B, T, C, wkind)
    gy = torch.randn(B, T, C, generator=torch.Generator().manual_seed(T), dtype=torch.float64)
    want = torch_grads(xs, gy)
    got = kernel_grads(xs, gy, device="cuda")
    for name, a, b in zip("wukv", got, want):
        assert_rel_close(a, b, 2e-4, f"grad {name}")


@cuda
def test_cuda_dispatch_uses_kernel(monkeypatch):
    cuda_ext()
    monkeypatch.delenv("LALIC_BIWKV", raising=False)
    monkeypatch.setattr(bw, "biwkv_torch", lambda *a: (_ for _ in ()).throw(AssertionError("torch path")))
    xs, ref = case(2, 31, 5, "model")
    y = biwkv(*(x.cuda().float() for x in xs))
    assert y.is_cuda
    assert_rel_close(y.cpu(), ref, 2e-5, "cuda dispatch")
