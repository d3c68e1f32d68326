"""One training step on this CPU: seconds, GFLOP and the rate reached, beside the machine's GEMM rate.

    python benchmarks/train_step.py --data DIR                    # small, variable rate, batch 8, 128 px
    python benchmarks/train_step.py --data DIR --config lite --batch 16
    python benchmarks/train_step.py --data DIR --batch 4 --threads 1 --bf16   # + bf16 transforms

Runs ``Trainer.train_step`` exactly as ``lalic train`` does (random init, the given
crops), median over --steps after two warm-up steps. The GFLOP of one step (forward and
backward) come from ``torch.utils.flop_counter``, which counts GEMMs and convolutions,
not element-wise work. Their rate against the float32 GEMM rate on a large square
product says how much a faster implementation could still buy: a step near that rate
gets faster only with less arithmetic or cheaper arithmetic, not with less overhead.

--bf16 adds a second row, timed in the same run from the same starting state: g_a and g_s
under bf16 autocast (the entropy model stays float32, its likelihoods need the range),
the cheaper arithmetic that AMX and AVX-512-BF16 offer. The bf16 GEMM rate is printed
beside the float32 one so the row can be read against what the hardware gives. The bf16
row also says how far it moves training from float32 on one batch from the same weights:
the relative change of the loss and the cosine between the two gradients (1: the same
update direction). Give --init (the bundled weights, say) to measure that on trained
weights rather than a random init.
"""

from __future__ import annotations

import argparse
import copy
import platform
import statistics
import tempfile

import torch

from speed import _timed, gemm_gflops, gflop

from lalic_cli.training import Trainer, TrainConfig, autocast_in_training


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="a folder of training images")
    ap.add_argument("--config", default="small")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--patch", type=int, default=128)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--bf16", action="store_true", help="also time g_a and g_s under bf16 autocast")
    ap.add_argument("--init", default=None, help="weights to start from (default: random init)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from lalic_cli import kernels

    ext = kernels.load_extension("cpu")
    rows = []
    with tempfile.TemporaryDirectory() as out:
        cfg = TrainConfig(data=args.data, out=out, config=args.config, variable_rate=True,
                          batch=args.batch, patch=args.patch, init=args.init)
        trainer = Trainer(cfg)
        start = (copy.deepcopy(trainer.model.state_dict()), copy.deepcopy(trainer.gen.get_state()))
        for precision in ["float32"] + (["bf16 g_a, g_s"] if args.bf16 else []):
            trainer.model.load_state_dict(start[0])
            if precision != "float32":
                for name in trainer.recipe.transforms:
                    autocast_in_training(getattr(trainer.model, name), torch.bfloat16)
            trainer.gen.set_state(start[1])
            fidelity = _loss_and_gradient(trainer)
            if precision == "float32":  # the noise floor: the next batch's float32 gradient
                between = _loss_and_gradient(trainer)[1]
            trainer.gen.set_state(start[1])
            for _ in range(2):
                trainer.train_step()
            times = [_timed(trainer.train_step) for _ in range(args.steps)]
            rows.append((precision, statistics.median(times), gflop(trainer.train_step), fidelity))
    peak, peak_bf16 = gemm_gflops(), gemm_gflops(dtype=torch.bfloat16)
    print(f"# machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
          f"torch {torch.__version__}, BiWKV {'C++ kernel' if ext else 'PyTorch path'}; "
          f"GEMM GFLOP/s float32 {peak:.1f}, bf16 {peak_bf16:.1f}\n")
    print("| config | precision | batch x patch | s / step | steps/s | GFLOP / step | GFLOP/s | float32 GEMM GFLOP/s "
          "| share of GEMM rate | time vs float32 | loss vs float32 | gradient cosine |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    loss0, grad0 = rows[0][3]
    for precision, s, work, (loss, grad) in rows:
        cosine = float(torch.nn.functional.cosine_similarity(grad.double(), grad0.double(), dim=0))
        print(f"| {args.config} | {precision} | {args.batch} x {args.patch} | {s:.3f} | {1 / s:.2f} | {work:.1f} | "
              f"{work / s:.1f} | {peak:.1f} | {work / s / peak:.0%} | {s / rows[0][1]:.2f} | "
              f"{loss / loss0 - 1:+.3%} | {cosine:.4f} |")
    print(f"\nfloat32 gradient cosine between two successive batches (sampling noise, for scale): "
          f"{float(torch.nn.functional.cosine_similarity(between.double(), grad0.double(), dim=0)):.4f}")


def _loss_and_gradient(trainer: Trainer) -> tuple[float, torch.Tensor]:
    """The R-D loss on the trainer's next batch and its gradient, without an update."""
    x = trainer.data.batch(trainer.cfg.batch, trainer.gen)
    quality, weights = trainer.recipe.sample(x.shape[0], trainer.gen)
    trainer.model.zero_grad(set_to_none=True)
    loss = trainer.recipe.loss(trainer.model(x, quality), x, weights)["loss"]
    loss.backward()
    params = [p for group in trainer.opt.param_groups for p in group["params"] if p.grad is not None]
    grad = torch.cat([p.grad.flatten() for p in params])
    trainer.model.zero_grad(set_to_none=True)
    return float(loss), grad


if __name__ == "__main__":
    main()
