"""LALIC's own matrix-product shapes against the square GEMM rate that speed.py's
arithmetic bound assumes, in float32 and in the portable path's 15-bit integers.

    python benchmarks/investigations/gemm_shapes.py
    ATEN_CPU_CAPABILITY=avx2 DNNL_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2 \\
        LALIC_KERNEL_ISA=avx2 python benchmarks/investigations/gemm_shapes.py   # AVX2 proxy

The shapes are the full config's on a 512x768 image: the first stage's projections and
channel mix (98,304 tokens, 96 wide, 4x hidden), the second stage's (24,576 tokens, 144)
and a channel context's channel mix (6,144 tokens, 320, 8x hidden). The integer products
are ``lalic_cli.portable.int_ops.linear`` (quantisation, int32 GEMM and float64 epilogue:
what a transform in those integers would run). Median of 15 after a warm-up; the rates
count 2 x rows x K x N operations.
"""

from __future__ import annotations

import statistics
import time

import torch

from lalic_cli.portable import int_ops

SHAPES = [(98304, 96, 384), (98304, 384, 96), (24576, 144, 576), (24576, 576, 144), (6144, 320, 2560),
          (2048, 2048, 2048)]


def _median_s(fn, reps: int = 15) -> float:
    fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    torch.manual_seed(0)
    print(f"# {torch.get_num_threads()} threads, ATen {torch.backends.cpu.get_cpu_capability()}\n")
    print("| rows x K x N | float32 ms | float32 GFLOP/s | int15 ms | int15 GOP/s | int15 / float32 time |")
    print("|---|---|---|---|---|---|")
    for rows, k, n in SHAPES:
        x, w = torch.randn(rows, k), torch.randn(n, k) / k**0.5
        wt, iw, x64 = w.t().contiguous(), int_ops.IntWeight(w), x.double()
        t_f = _median_s(lambda: torch.mm(x, wt))
        t_i = _median_s(lambda: int_ops.linear(x64, iw))
        ops = 2 * rows * k * n / 1e9
        print(f"| {rows}x{k}x{n} | {t_f * 1e3:.1f} | {ops / t_f:.0f} | {t_i * 1e3:.1f} | {ops / t_i:.0f} | {t_i / t_f:.2f} |")


if __name__ == "__main__":
    main()
