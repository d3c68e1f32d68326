"""Speed of the BiWKV implementations at the size of the first stage of a Kodak image.

    python benchmarks/biwkv_speed.py [--reps 3] [--B 1] [--T 98304] [--C 96] [--threads N]
    python benchmarks/biwkv_speed.py --B 8 --T 4096 --C 32 --threads 1   # a training step's first stage
    python benchmarks/biwkv_speed.py --triton-blocks 64,32,16,8 32,32,16,4   # Triton tile sizes

Times every available path (PyTorch log-space scans, "scan" = float64 prefix sums, CPU
kernel, and on a GPU the CUDA kernel, the Triton scan (a row per --triton-blocks entry:
BLOCK_T,BLOCK_C,BLOCK_N,num_warps) and the PyTorch path there; "exact" is the CPU kernel
forced onto its exact scheme, which it otherwise takes only when keys or decays are too
spread for its fast path), forward alone (no_grad) and forward + backward, as the median
of --reps runs after one warm-up.  Prints the ratio to the PyTorch path on the same device
(> 1: faster), each output's largest error relative to max|y| of the PyTorch path, and
the Triton rows' ratios to the CUDA kernel and to the CPU kernel.
"""

from __future__ import annotations

import argparse
import functools
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
    ap.add_argument("--triton-blocks", nargs="*", default=[],
                    help="extra Triton tile sizes BLOCK_T,BLOCK_C,BLOCK_N,num_warps (the default always runs)")
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
        paths = {impl: functools.partial(biwkv, impl=impl) for impl in ("torch", "scan")}
        if kernels.load_extension(dev.type) is not None:
            paths["kernel"] = functools.partial(biwkv, impl="kernel")
        if dev.type == "cuda":
            paths.update(triton_paths(args.triton_blocks))
        with torch.no_grad():
            y_ref = biwkv(w, u, k, v, impl="torch")
        base = None
        for name, op in paths.items():

            def fwd():
                with torch.no_grad():
                    return op(w, u, k, v)

            def fwd_bwd():
                xs = [x.detach().requires_grad_() for x in (w, u, k, v)]
                op(*xs).backward(gy)

            err = float((fwd().double() - y_ref.double()).abs().max() / y_ref.abs().max())
            tf, tb = timed(fwd, dev, args.reps), timed(fwd_bwd, dev, args.reps)
            if name == "torch":
                base = (tf, tb)
            rows.append((dev.type, name, tf, tb, base[0] / tf, base[1] / tb, err))
        ext = kernels.load_extension("cpu") if dev.type == "cpu" else None
        if ext is not None:  # the CPU kernel's exact scheme alone, as when the fast path does not apply
            kc, vc = k.contiguous(), v.contiguous()
            te = timed(lambda: ext.forward(w, u, kc, vc, exact=True), dev, args.reps)
            teb = timed(lambda: (ext.forward(w, u, kc, vc, exact=True), ext.backward(w, u, kc, vc, gy, exact=True)),
                        dev, args.reps)
            rows.append((dev.type, "exact", te, teb, base[0] / te, base[1] / teb, float("nan")))

    print(f"BiWKV  B={B} T={T} C={C}  torch {torch.__version__}  threads={torch.get_num_threads()}"
          f"  median of {args.reps}" + (f"  GPU {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""))
    print(f"{'device':<7}{'path':<24}{'fwd [ms]':>11}{'fwd+bwd [ms]':>14}{'fwd x':>9}{'fwd+bwd x':>11}{'max err':>10}")
    for dev, impl, tf, tb, rf, rb, err in rows:
        print(f"{dev:<7}{impl:<24}{tf * 1e3:>11.2f}{tb * 1e3:>14.2f}{rf:>9.1f}{rb:>11.1f}{err:>10.1e}")
    times = {(dev, impl): (tf, tb) for dev, impl, tf, tb, *_ in rows}
    for ref in (("cuda", "kernel"), ("cpu", "kernel")):
        if ref not in times:
            continue
        for (dev, impl), (tf, tb) in times.items():
            if impl.startswith("triton"):
                print(f"{impl} vs {ref[0]} kernel: fwd {times[ref][0] / tf:.1f}x, fwd+bwd {times[ref][1] / tb:.1f}x")


def triton_paths(extra: list[str]) -> dict:
    """The Triton scan at its default tile sizes and at each of ``extra``; none without triton."""
    try:
        from lalic_cli.ops import biwkv_triton
    except ImportError as exc:
        print(f"triton path unavailable: {exc}")
        return {}
    configs = [biwkv_triton.BLOCKS] + [tuple(int(x) for x in e.split(",")) for e in extra]
    return {"triton " + ",".join(map(str, c)): functools.partial(biwkv_triton.biwkv_triton, blocks=c)
            for c in dict.fromkeys(configs)}

if __name__ == "__main__":
    main()
