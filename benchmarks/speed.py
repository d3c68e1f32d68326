"""Speed and memory of LALIC against CompressAI's Elic2022Official, side by side in one run.

    python benchmarks/speed.py                      # Kodak-sized, full configs, random weights
    python benchmarks/speed.py --scaling 256 512 1024 2048
    python benchmarks/speed.py --config small        # the bundled weights' config

Random weights are fine for timing: the work per pixel does not depend on the values.
Real coding is included (rANS through CompressAI's coder). Prints medians over --reps
after one warm-up, and the ratio LALIC / ELIC.
"""

from __future__ import annotations

import argparse
import platform
import resource
import statistics
import sys
import time

import torch


def _median_time(fn, reps: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(reps):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _codec_times(model, x: torch.Tensor, reps: int) -> tuple[float, float]:
    with torch.inference_mode():
        out = model.compress(x)
        enc = _median_time(lambda: model.compress(x), reps)
        dec = _median_time(lambda: model.decompress(out["strings"], out["shape"]), reps)
    return enc, dec


def _lalic(config: str):
    from lalic_cli.models import LALIC, get_config

    torch.manual_seed(0)
    m = LALIC(**get_config(config).kwargs()).eval()
    m.update(force=True)
    return m


def _elic():
    from compressai.models import Elic2022Official

    torch.manual_seed(0)
    m = Elic2022Official().eval()
    m.update(force=True)
    return m


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="full")
    ap.add_argument("--size", type=int, nargs=2, default=(512, 768), metavar=("H", "W"))
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--scaling", type=int, nargs="*", default=None, help="square sizes for the scaling table")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from lalic_cli import kernels

    ext = kernels.load_extension("cpu")
    print(f"# machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
          f"torch {torch.__version__}, BiWKV {'C++ kernel' if ext else 'PyTorch path'}")
    h, w = args.size
    x = torch.rand(1, 3, h, w)
    rows = []
    lalic = _lalic(args.config)
    rows.append((f"LALIC ({args.config})", *_codec_times(lalic, x, args.reps)))
    del lalic
    rows.append(("Elic2022Official", *_codec_times(_elic(), x, args.reps)))
    print(f"\n{h}x{w}, median of {args.reps} after a warm-up (seconds)\n")
    print(f"| model | compress s | decompress s |\n|---|---|---|")
    for name, e, d in rows:
        print(f"| {name} | {e:.2f} | {d:.2f} |")
    (_, le, ld), (_, ee, ed) = rows
    print(f"| ratio LALIC / ELIC | {le / ee:.2f} | {ld / ed:.2f} |")

    if args.scaling:
        print(f"\nscaling, LALIC ({args.config}): time and peak RSS against pixel count\n")
        print("| size | pixels | compress s | decompress s | s per Mpixel (enc) | peak RSS GB |\n|---|---|---|---|---|---|")
        model = _lalic(args.config)
        for s in args.scaling:
            xs = torch.rand(1, 3, s, s)
            e, d = _codec_times(model, xs, 1)
            rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
            print(f"| {s}x{s} | {s * s:,} | {e:.2f} | {d:.2f} | {e / (s * s / 1e6):.2f} | {rss:.2f} |")
            sys.stdout.flush()


if __name__ == "__main__":
    main()
