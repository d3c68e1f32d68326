"""Speed of the BiWKV implementations at the size of the first stage of a Kodak image.

    python benchmarks/biwkv_speed.py [--reps 3] [--B 1] [--T 98304] [--C 96] [--threads N]
    python benchmarks/biwkv_speed.py --B 8 --T 4096 --C 32 --threads 1   # a training step's first stage

Times every available path (PyTorch log-space scans, "scan" = float64 prefix sums, CPU kernel, and on a GPU the CUDA kernel
and the PyTorch path there; "exact" is the CPU kernel forced onto its exact scheme,
which it otherwise takes only when keys or decays are too spread for its fast path), forward alone (no_grad) and forward + backward, as the
median of --reps runs after one warm-up, and prints the ratio to the PyTorch path on
the same device (> 1: faster).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from lalic_cli import kernels
from lalic_cli.ops.biwkv import biwkv


def timed(fn, device: torch.device, reps: int) -> float:
    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    fn()  # warm-up (and kernel build / load)
    times = []
    for _ in range(reps):
        sync()
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--B", type=int, default=1)
    ap.add_argument("--T", type=int, default=384 * 256)
    ap.add_argument("--C", type=int, default=96)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    g = torch.Generator().manual_seed(0)
    B, T, C = args.B, args.T, args.C
    # as in the model: w = decay / T, u = boost / T
    w0 = torch.randn(C, generator=g) * 3 / T
    u0 = torch.randn(C, generator=g) / T
    k0 = torch.randn(B, T, C, generator=g)
    v0 = torch.randn(B, T, C, generator=g)
    gy0 = torch.randn(B, T, C, generator=g)

    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    rows = []
    for dev in devices:
        w, u, k, v, gy = (x.to(dev) for x in (w0, u0, k0, v0, gy0))
        impls = ["torch", "scan"]
        if kernels.load_extension(dev.type) is not None:
            impls.append("kernel")
        base = None
        for impl in impls:

            def fwd():
                with torch.no_grad():
                    biwkv(w, u, k, v, impl=impl)

            def fwd_bwd():
                xs = [x.detach().requires_grad_() for x in (w, u, k, v)]
                biwkv(*xs, impl=impl).backward(gy)

            tf, tb = timed(fwd, dev, args.reps), timed(fwd_bwd, dev, args.reps)
            if impl == "torch":
                base = (tf, tb)
            rows.append((dev.type, impl, tf, tb, base[0] / tf, base[1] / tb))
        ext = kernels.load_extension("cpu") if dev.type == "cpu" else None
        if ext is not None:  # the CPU kernel's exact scheme alone, as when the fast path does not apply
            kc, vc = k.contiguous(), v.contiguous()
            te = timed(lambda: ext.forward(w, u, kc, vc, exact=True), dev, args.reps)
            teb = timed(lambda: (ext.forward(w, u, kc, vc, exact=True), ext.backward(w, u, kc, vc, gy, exact=True)),
                        dev, args.reps)
            rows.append((dev.type, "exact", te, teb, base[0] / te, base[1] / teb))

    print(f"BiWKV  B={B} T={T} C={C}  torch {torch.__version__}  threads={torch.get_num_threads()}"
          f"  median of {args.reps}")
    print(f"{'device':<7}{'path':<8}{'fwd [ms]':>11}{'fwd+bwd [ms]':>14}{'fwd x':>9}{'fwd+bwd x':>11}")
    for dev, impl, tf, tb, rf, rb in rows:
        print(f"{dev:<7}{impl:<8}{tf * 1e3:>11.1f}{tb * 1e3:>14.1f}{rf:>9.1f}{rb:>11.1f}")


if __name__ == "__main__":
    main()
