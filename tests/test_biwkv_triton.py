"""The Triton BiWKV (``lalic_cli/ops/biwkv_triton.py``) against the naive formula and
autograd through it: on the CPU through Triton's interpreter, and compiled on a GPU.

The interpreter needs TRITON_INTERPRET=1 before triton is first imported (triton's own
library functions are decorated then), and a process that imported triton without it
cannot run the interpreter, nor can one with it compile.  So the interpreted tests run
in a child process started by :func:`test_under_the_interpreter`, with the variable set
from the start; in the parent they are skipped.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import lalic_cli.ops.biwkv as bw

pytest.importorskip("triton")

INTERPRETED = os.environ.get("TRITON_INTERPRET") == "1"
interp = pytest.mark.skipif(not INTERPRETED, reason="runs in test_under_the_interpreter's child process")
ROOT = Path(__file__).resolve().parents[1]
# BLOCK_T, BLOCK_C, BLOCK_N, num_warps: small, so that small inputs span several chunks and
# carry steps (several channel blocks: test_forward_default_blocks)
SMALL = (8, 8, 4, 1)


@pytest.mark.skipif(INTERPRETED, reason="this is the child process")
def test_under_the_interpreter():
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    env = dict(os.environ, TRITON_INTERPRET="1", PYTHONPATH=path)
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(Path(__file__))],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-3000:]
    assert " passed" in run.stdout and " failed" not in run.stdout


def _scan_by_slices(self, input):
    """The interpreter's scan with the combine function applied to whole slices along the
    axis, in the same order, instead of element by element (the same kernel source, ~50x
    faster; ``apply_impl`` around it flips the data of a reverse scan)."""
    data = [np.moveaxis(a.handle.data, self.axis, 0) for a in input]
    out = [np.empty_like(d) for d in data]
    acc = None
    for i in range(data[0].shape[0]):
        cur = tuple(self.to_tensor(d[i], a.dtype) for d, a in zip(data, input))
        acc = cur if acc is None else self.combine_fn.fn(*acc, *cur)
        acc = acc if isinstance(acc, tuple) else (acc,)
        for o, a in zip(out, acc):
            o[i] = a.handle.data
    return [self.to_tensor(np.moveaxis(o, 0, self.axis), a.dtype) for o, a in zip(out, input)]


def _reduce_by_slices(self, input):
    """The interpreter's reduction as the last slice of :func:`_scan_by_slices`."""
    from triton.runtime import interpreter

    if self.axis is None:
        return _reduce_by_slices.original(self, input)
    scan = interpreter.ScanOps(self.axis, self.combine_fn, False)
    last = [np.take(s.handle.data, [-1] if self.keep_dims else -1, axis=self.axis) for s in scan.generic_scan(input)]
    return [self.to_tensor(x, a.dtype) for x, a in zip(last, input)]


@pytest.fixture(scope="module")
def bt():
    """The module, with the interpreter's scans sped up where its internals are as expected."""
    from triton.runtime import interpreter

    from lalic_cli.ops import biwkv_triton

    mp = pytest.MonkeyPatch()
    original = getattr(interpreter.ReduceOps, "generic_reduce", None)
    if original is not None and hasattr(interpreter.ScanOps, "generic_scan"):
        _reduce_by_slices.original = original
        mp.setattr(interpreter.ScanOps, "generic_scan", _scan_by_slices)
        mp.setattr(interpreter.ReduceOps, "generic_reduce", _reduce_by_slices)
    yield biwkv_triton
    mp.undo()


def naive(w, u, k, v):
    """The formula, differentiable: y_t is the softmax-weighted mean of v over the log-weights
    -(|t - i| - 1) w + k_i (i != t) and u + k_t (i = t)."""
    T = k.shape[1]
    pos = torch.arange(T, dtype=torch.float64)
    dist = (pos[:, None] - pos[None, :]).abs()
    logw = -(dist - 1)[None, :, :, None] * w + k[:, None, :, :]  # B x t x i x C
    eye = torch.eye(T, dtype=torch.bool)[None, :, :, None]
    logw = torch.where(eye, (u + k)[:, :, None, :], logw)
    return (torch.softmax(logw, dim=2) * v[:, None]).sum(2)


def inputs(T: int, B: int = 2, seed: int = 0):
    """float32 values held in float64; the channels span the decays the kernels meet: the
    model's (decay / T), |w| ~ 1 (|w| T in the hundreds), +-20 and +-50 (exponents far
    beyond float range unless shifted), and a near-zero one; keys in +-30."""
    g = torch.Generator().manual_seed(seed * 1000 + T)
    r = torch.randn(8, generator=g)
    w = torch.cat([r[:2] * 3 / T, r[2:4], torch.tensor([20.0, -20.0, 50.0, 1e-6])])
    u = torch.randn(8, generator=g) * 2
    k = (torch.rand(B, T, 8, generator=g) * 2 - 1) * 30
    v = torch.randn(B, T, 8, generator=g)
    return tuple(x.float().double() for x in (w, u, k, v))


def assert_rel_close(got, want, rel, what):
    """Error relative to the tensor's largest entry, as in tests/test_biwkv.py."""
    err = (got.double() - want.double()).abs().max().item()
    scale = want.abs().max().item()
    assert err <= rel * scale + 1e-12, f"{what}: max error {err:.3e} > {rel:.1e} * {scale:.3e}"


def test_naive_is_the_reference():
    xs = inputs(9)
    assert_rel_close(naive(*xs), bw.biwkv_reference(*xs), 1e-12, "naive")


@interp
@pytest.mark.parametrize("T", [1, 2, 8, 9, 33, 70])
def test_forward(bt, T):
    """T = 1, one chunk, a full chunk, a partial one, several (70: 9 chunks, 3 carry steps)."""
    xs = inputs(T)
    y = bt.forward(*(x.float().contiguous() for x in xs), blocks=SMALL)
    assert torch.isfinite(y).all()
    # float32 weights as in the compiled kernels (observed <~ 1e-6 of max|y|)
    assert_rel_close(y, naive(*xs), 2e-5, f"T={T}")


@interp
def test_forward_default_blocks(bt):
    """The production block sizes: one 64-row chunk plus a partial one, 40 = 32 + 8 channels."""
    xs = inputs(70, B=1)
    w, u, k, v = (torch.cat([x, x.flip(-1) * 0.5] * 3, dim=-1)[..., :40] for x in xs)
    y = bt.forward(*(x.float().contiguous() for x in (w, u, k, v)))
    assert_rel_close(y, naive(w, u, k, v), 2e-5, "default blocks")


@interp
def test_extreme_values(bt):
    """|w| T = 5e3 and |k|, |u| = 80, as tests/test_biwkv.py's extreme case."""
    T = 100
    w = torch.tensor([50.0, -50.0, 1e-6, -1e-6], dtype=torch.float64)
    u = torch.tensor([80.0, -80.0, 0.0, 5.0], dtype=torch.float64)
    k = ((torch.rand(2, T, 4, generator=torch.Generator().manual_seed(1)) * 2 - 1) * 80).double()
    v = torch.randn(2, T, 4, generator=torch.Generator().manual_seed(2)).double()
    y = bt.forward(*(x.float().contiguous() for x in (w, u, k, v)), blocks=SMALL)
    assert_rel_close(y, bw.biwkv_reference(w, u, k, v), 2e-5, "extreme")


@interp
@pytest.mark.parametrize("T", [1, 2, 33])
def test_backward(bt, T):
    xs = inputs(T, seed=1)
    gy = torch.randn(2, T, 8, generator=torch.Generator().manual_seed(T), dtype=torch.float64)
    leaves = [x.clone().requires_grad_() for x in xs]
    naive(*leaves).backward(gy)
    got = [x.float().requires_grad_() for x in xs]
    y = bt.biwkv_triton(*got, blocks=SMALL)
    assert y.dtype == torch.float32
    y.backward(gy.float())
    for name, a, b in zip("wukv", got, leaves):
        assert a.grad.shape == b.grad.shape and torch.isfinite(a.grad).all()
        # the compiled kernels' bound (float32 weights; gw sums B*T distance-weighted terms)
        assert_rel_close(a.grad, b.grad, 2e-4, f"T={T} grad {name}")


@interp
def test_dtypes_and_layouts(bt):
    w, u, k, v = inputs(9)
    kt = k.float().transpose(1, 2).contiguous().transpose(1, 2)
    y = bt.biwkv_triton(w.float(), u.float(), kt, v.float(), blocks=SMALL)
    assert y.dtype == torch.float32
    assert_rel_close(y, naive(w, u, k, v), 2e-5, "non-contiguous k")
    assert bt.biwkv_triton(w, u, k, v, blocks=SMALL).dtype == torch.float64
    empty = torch.zeros(2, 0, 8, requires_grad=True)
    bt.biwkv_triton(w.float(), u.float(), empty, empty).sum().backward()
    assert empty.grad.shape == empty.shape


@interp
def test_dispatch(bt, monkeypatch):
    """impl="triton" takes the Triton path; the automatic choice on the CPU does not."""
    monkeypatch.delenv("LALIC_BIWKV", raising=False)
    monkeypatch.setattr(bw, "_triton_module", lambda: bt)
    calls = []
    real = bt.biwkv_triton
    monkeypatch.setattr(bt, "biwkv_triton", lambda *a: calls.append(1) or real(*a, blocks=SMALL))
    xs = inputs(9)
    assert_rel_close(bw.biwkv(*(x.float() for x in xs), impl="triton"), naive(*xs), 2e-5, "dispatch")
    assert calls == [1]
    bw.biwkv(*(x.float() for x in xs))
    assert calls == [1]


# ------------------------------------------------------------------ compiled

def _compile_for_hopper(fn, constexprs: dict) -> None:
    """Compile one kernel for sm_90 through triton's whole pipeline, ptxas included; no GPU
    needed.  Pointer parameters end in ``_ptr``, the other non-constexpr ones are sizes."""
    import inspect

    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    params = inspect.signature(fn.fn).parameters
    sig = {n: "constexpr" if n in constexprs else ("*fp32" if n.endswith("_ptr") else "i32") for n in params}
    triton.compile(ASTSource(fn=fn, signature=sig, constexprs=constexprs), target=GPUTarget("cuda", 90, 32),
                   options={"num_warps": 4})


@pytest.mark.skipif(INTERPRETED, reason="compiles in the parent process")
def test_compiles_for_hopper():
    """The interpreter accepts code that triton's compiler rejects (globals, mismatched
    returns): every kernel variant must also compile, at small tiles to keep this quick."""
    try:
        from triton.backends.nvidia.compiler import CUDABackend  # noqa: F401
    except ImportError:
        pytest.skip("triton has no CUDA backend here")
    from lalic_cli.ops import biwkv_triton as bt

    tile = {"BLOCK_T": 16, "BLOCK_C": 16}
    for grad, moments in [(False, True), (True, False)]:
        _compile_for_hopper(bt._totals_kernel, {"GRAD": grad, "MOMENTS": moments, "NF": 6 if moments else 4, **tile})
    for moments in (False, True):
        _compile_for_hopper(bt._carry_kernel, {"MOMENTS": moments, "NF": 6 if moments else 4, "BLOCK_N": 16,
                                                "BLOCK_C": 16})
    for backward in (False, True):
        _compile_for_hopper(bt._main_kernel, {"BACKWARD": backward, **tile})
    _compile_for_hopper(bt._grad_kernel, tile)


# ------------------------------------------------------------------ on a GPU

cuda = pytest.mark.skipif(INTERPRETED or not torch.cuda.is_available(), reason="needs a CUDA device, compiled")


@cuda
@pytest.mark.parametrize("T", [1, 33, 1000, 4097])
def test_compiled_forward_backward(T):
    """The compiled kernels at the production block sizes, fp32 against the float64
    reference paths (the naive formula is O(T^2) in memory, so biwkv_torch for gradients)."""
    from lalic_cli.ops.biwkv_triton import biwkv_triton

    B = 2
    xs = inputs(T, B=B)
    gy = torch.randn(B, T, 8, generator=torch.Generator().manual_seed(T), dtype=torch.float64)
    got = [x.cuda().float().requires_grad_() for x in xs]
    y = biwkv_triton(*got)
    assert_rel_close(y.cpu(), bw.biwkv_reference(*xs), 2e-5, f"T={T}")
    y.backward(gy.cuda().float())
    leaves = [x.clone().requires_grad_() for x in xs]
    bw.biwkv_torch(*leaves).backward(gy)
    for name, a, b in zip("wukv", got, leaves):
        assert_rel_close(a.grad.cpu(), b.grad, 2e-4, f"T={T} grad {name}")


@cuda
def test_cuda_dispatch_on_request(monkeypatch):
    monkeypatch.setenv("LALIC_BIWKV", "triton")
    monkeypatch.setattr(bw, "_BiWKVKernel", None)  # the CUDA extension's path would fail
    xs = inputs(33)
    y = bw.biwkv(*(x.cuda().float() for x in xs))
    assert y.is_cuda
    assert_rel_close(y.cpu(), bw.biwkv_reference(*xs), 2e-5, "cuda dispatch")


@cuda
def test_compiled_speed_smoke():
    """Not a benchmark (benchmarks/biwkv_speed.py is): the Kodak-sized first stage runs."""
    from lalic_cli.ops.biwkv_triton import biwkv_triton

    k = torch.randn(1, 98304, 96, device="cuda")
    w, u = torch.randn(96, device="cuda") / 98304, torch.randn(96, device="cuda") / 98304
    biwkv_triton(w, u, k, k)
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    biwkv_triton(w, u, k, k)
    torch.cuda.synchronize()
    assert time.perf_counter() - t0 < 1.0
