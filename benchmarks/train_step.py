"""One training step on this CPU: seconds, GFLOP and the rate reached, beside the machine's GEMM rate.

    python benchmarks/train_step.py --data DIR                    # small, variable rate, batch 8, 128 px
    python benchmarks/train_step.py --data DIR --config lite --batch 16

Runs ``Trainer.train_step`` exactly as ``lalic train`` does (random init, the given
crops), median over --steps after two warm-up steps. The GFLOP of one step (forward and
backward) come from ``torch.utils.flop_counter``, which counts GEMMs and convolutions,
not element-wise work. Their rate against the float32 GEMM rate on a large square
product says how much a faster implementation could still buy: a step near that rate
gets faster only with less arithmetic or cheaper arithmetic, not with less overhead.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile

import torch

from speed import _timed, gflop, sgemm_gflops

from lalic_cli.train import Trainer, TrainConfig


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="a folder of training images")
    ap.add_argument("--config", default="small")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--patch", type=int, default=128)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from lalic_cli import kernels

    ext = kernels.load_extension("cpu")
    with tempfile.TemporaryDirectory() as out:
        cfg = TrainConfig(data=args.data, out=out, config=args.config, variable_rate=True,
                          batch=args.batch, patch=args.patch)
        trainer = Trainer(cfg)
        for _ in range(2):
            trainer.train_step()
        times = [_timed(trainer.train_step) for _ in range(args.steps)]
        work = gflop(trainer.train_step)
    s = statistics.median(times)
    peak = sgemm_gflops()
    print(f"# machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
          f"torch {torch.__version__}, BiWKV {'C++ kernel' if ext else 'PyTorch path'}\n")
    print("| config | batch x patch | s / step | steps/s | GFLOP / step | GFLOP/s | float32 GEMM GFLOP/s | share of GEMM rate |")
    print("|---|---|---|---|---|---|---|---|")
    print(f"| {args.config} | {args.batch} x {args.patch} | {s:.3f} | {1 / s:.2f} | {work:.1f} | {work / s:.1f} | "
          f"{peak:.1f} | {work / s / peak:.0%} |")


if __name__ == "__main__":
    main()
