"""Speed and memory of LALIC against CompressAI's Elic2022Official, side by side in one run.

    python benchmarks/speed.py                       # Kodak-sized, full configs, random weights
    python benchmarks/speed.py --allocator default   # without the CLI's allocator tuning
    python benchmarks/speed.py --scaling 256 512 1024 2048 --plot scaling.png
    python benchmarks/speed.py --config small        # the bundled weights' config
    python benchmarks/speed.py --precision float32 bf16  # LALIC's g_a and g_s both ways

Random weights are fine for timing: the work per pixel does not depend on the values.
Real coding is included (rANS through CompressAI's coder). The two models run
interleaved (LALIC, ELIC, LALIC, ELIC, ...) so that drift in machine load hits both;
medians over --reps after one warm-up each, and the ratio LALIC / ELIC. Beside the
times: each call's GFLOP (``torch.utils.flop_counter``) and the rate reached, and the
machine's float32 GEMM rate, which bounds how fast LALIC's arithmetic can go here.
``--precision`` runs LALIC with its transforms in each of the given precisions
(``lalic_cli/precision.py``; bf16 only where the CPU has native bf16, else the run
stops), interleaved with ELIC as one more model; ELIC stays float32.

``--allocator tuned`` (the default) applies what ``lalic`` itself applies at start-up
(``lalic_cli.runtime.tune_allocator``) to the whole process, so both models get it.
The scaling table runs every size in a fresh process, so each peak RSS is its own.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time

import torch


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _timed(fn) -> float:
    _sync()
    t0 = time.perf_counter()
    fn()
    _sync()
    return time.perf_counter() - t0


def _lalic(config: str, precision: str = "float32"):
    from lalic_cli.models import LALIC, get_config

    torch.manual_seed(0)
    m = LALIC(**get_config(config).kwargs()).eval()
    m.update(force=True)
    m.precision = precision
    return m


def _elic():
    from compressai.models import Elic2022Official

    torch.manual_seed(0)
    m = Elic2022Official().eval()
    m.update(force=True)
    return m


def _coders(model, x: torch.Tensor):
    """(compress, decompress) closures on one input, warmed up once."""
    out = model.compress(x)
    model.decompress(out["strings"], out["shape"])
    return (lambda: model.compress(x)), (lambda: model.decompress(out["strings"], out["shape"]))


def gflop(fn) -> float:
    """Floating-point work of one call as ``torch.utils.flop_counter`` counts it
    (convolutions and matrix products; element-wise work is not counted)."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return counter.get_total_flops() / 1e9


def gemm_gflops(n: int = 2048, reps: int = 5, dtype: torch.dtype = torch.float32) -> float:
    """The machine's GEMM rate on a large square product in ``dtype``: what a perfectly
    GEMM-bound transform could reach here."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    torch.mm(a, b)
    return 2 * n**3 / 1e9 / statistics.median(_timed(lambda: torch.mm(a, b)) for _ in range(reps))


def _peak_rss_gb() -> float:
    from lalic_cli.memory import peak_rss_bytes

    return peak_rss_bytes() / 1e9


def side_by_side(args) -> None:
    h, w = args.size
    x = torch.rand(1, 3, h, w)
    names = (*(f"LALIC ({args.config}, {p})" for p in args.precision), "Elic2022Official")
    with torch.inference_mode():
        models = (*(_lalic(args.config, p) for p in args.precision), _elic())
        coders = [_coders(m, x) for m in models]
        times = {(n, op): [] for n in names for op in (0, 1)}
        for _ in range(args.reps):
            for op in (0, 1):
                for name, fns in zip(names, coders):
                    times[name, op].append(_timed(fns[op]))
        flops = {(n, op): gflop(fns[op]) for n, fns in zip(names, coders) for op in (0, 1)}
    med = {key: statistics.median(v) for key, v in times.items()}
    print(f"\n{h}x{w}, interleaved, median of {args.reps} after a warm-up (seconds)\n")
    print("| model | compress s | decompress s | compress GFLOP | decompress GFLOP | compress GFLOP/s | decompress GFLOP/s |")
    print("|---|---|---|---|---|---|---|")
    for n in names:
        print(f"| {n} | {med[n, 0]:.2f} | {med[n, 1]:.2f} | {flops[n, 0]:.1f} | {flops[n, 1]:.1f} | "
              f"{flops[n, 0] / med[n, 0]:.1f} | {flops[n, 1] / med[n, 1]:.1f} |")
    *ours, b = names
    for a, p in zip(ours, args.precision):
        print(f"| ratio LALIC {p} / ELIC | **{med[a, 0] / med[b, 0]:.2f}** | **{med[a, 1] / med[b, 1]:.2f}** | "
              f"{flops[a, 0] / flops[b, 0]:.2f} | {flops[a, 1] / flops[b, 1]:.2f} | | |")
    peak = gemm_gflops()
    a = ours[0]
    print(f"\nfloat32 GEMM on this machine (torch.mm 2048^3, median of 5): {peak:.1f} GFLOP/s. At that rate "
          f"LALIC's arithmetic alone takes {flops[a, 0] / peak:.2f} s / {flops[a, 1] / peak:.2f} s, "
          f"a ratio of at least {flops[a, 0] / peak / med[b, 0]:.2f} / {flops[a, 1] / peak / med[b, 1]:.2f} "
          "against ELIC as measured.")
    if "bf16" in args.precision:
        peak16 = gemm_gflops(dtype=torch.bfloat16)
        with torch.inference_mode():
            y = models[0].analysis(x)
            g_a, g_s = gflop(lambda: models[0].analysis(x)), gflop(lambda: models[0].synthesis(y.round()))
        enc = g_a / peak16 + (flops[a, 0] - g_a) / peak
        dec = g_s / peak16 + (flops[a, 1] - g_s) / peak
        print(f"bf16 GEMM (same product): {peak16:.1f} GFLOP/s. With g_a ({g_a:.1f} GFLOP) and g_s ({g_s:.1f}) at "
              f"that rate and the rest at float32's, LALIC's arithmetic takes {enc:.2f} s / {dec:.2f} s, a ratio of "
              f"at least {enc / med[b, 0]:.2f} / {dec / med[b, 1]:.2f}.")


def one_size(args) -> None:
    """Child of --scaling: time one square size and print a JSON line."""
    s = args.one
    x = torch.rand(1, 3, s, s)
    with torch.inference_mode():
        enc, dec = _coders(_lalic(args.config, args.precision[0]), x)
        e = statistics.median(_timed(enc) for _ in range(args.reps))
        d = statistics.median(_timed(dec) for _ in range(args.reps))
    print(json.dumps({"size": s, "enc": e, "dec": d, "rss": _peak_rss_gb()}))


def scaling(args) -> None:
    rows = []
    print(f"\nscaling, LALIC ({args.config}, {args.precision[0]}): time and peak RSS against pixel count "
          f"(one process per size, median of {args.reps} after a warm-up)\n")
    print("| size | Mpixel | compress s | decompress s | compress s/Mpixel | decompress s/Mpixel | peak RSS GB |")
    print("|---|---|---|---|---|---|---|")
    for s in args.scaling:
        cmd = [sys.executable, __file__, "--one", str(s), "--config", args.config, "--reps", str(args.reps),
               "--allocator", args.allocator, "--precision", args.precision[0]]
        cmd += ["--threads", str(args.threads)] if args.threads else []
        r = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.splitlines()[-1])
        mp = s * s / 1e6
        rows.append((mp, r["enc"], r["dec"], r["rss"]))
        print(f"| {s}x{s} | {mp:.3f} | {r['enc']:.2f} | {r['dec']:.2f} | {r['enc'] / mp:.2f} | "
              f"{r['dec'] / mp:.2f} | {r['rss']:.2f} |", flush=True)
    (m0, e0, d0, r0), (m1, e1, d1, r1) = rows[0], rows[-1]
    print(f"\nfrom {m0:.3f} to {m1:.3f} Mpixel ({m1 / m0:.0f}x): compress {e1 / e0:.1f}x, "
          f"decompress {d1 / d0:.1f}x, peak RSS {r1 / r0:.1f}x")
    if args.plot:
        _plot(rows, args)


def _plot(rows, args) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    mp = [r[0] for r in rows]
    fig = Figure(figsize=(9, 3.8))
    FigureCanvasAgg(fig)
    ax1, ax2 = fig.subplots(1, 2)
    ax1.plot(mp, [r[1] for r in rows], "o-", label="compress")
    ax1.plot(mp, [r[2] for r in rows], "s-", label="decompress")
    ax2.plot(mp, [r[3] for r in rows], "o-", color="C2", label="peak RSS")
    for ax, ylabel in ((ax1, "seconds"), (ax2, "GB")):
        ax.set_xlabel("megapixels")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(f"LALIC ({args.config}) on {platform.machine()}, {torch.get_num_threads()} threads")
    fig.tight_layout()
    fig.savefig(args.plot, dpi=120)
    print(f"plot: {args.plot}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="full")
    ap.add_argument("--size", type=int, nargs=2, default=(512, 768), metavar=("H", "W"))
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--allocator", choices=("tuned", "default"), default="tuned")
    ap.add_argument("--precision", nargs="+", choices=("float32", "bf16"), default=["float32"],
                    help="LALIC's transforms, one row each (--scaling: the first)")
    ap.add_argument("--scaling", type=int, nargs="*", default=None, help="square sizes for the scaling table only")
    ap.add_argument("--plot", default=None, help="PNG for the scaling plot")
    ap.add_argument("--one", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.allocator == "tuned":
        from lalic_cli.runtime import tune_allocator

        tune_allocator()
    from lalic_cli import kernels
    from lalic_cli.precision import native_bf16

    ext = kernels.load_extension("cpu")
    if "bf16" in args.precision and not native_bf16():
        sys.exit("--precision bf16: this CPU has no native bf16 (AMX or AVX-512-BF16); lalic would not use it")
    if args.one:
        return one_size(args)
    print(f"# machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
          f"torch {torch.__version__}, BiWKV {'C++ kernel' if ext else 'PyTorch path'}, "
          f"allocator {args.allocator}, native bf16 {'yes' if native_bf16() else 'no'}")
    if args.scaling:
        scaling(args)
    else:
        side_by_side(args)


if __name__ == "__main__":
    main()
