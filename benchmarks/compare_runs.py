"""BD-rates between `lalic bench --json` results on the same images: paired A/B runs,
effort levels, a GPU run's JSON against a classical codec's made here.

    python benchmarks/compare_runs.py base.json other.json [more.json ...]
    python benchmarks/compare_runs.py base.json other.json --qualities 1 6

Each file's first run (LALIC or MRT) is used, or a classical codec's with ``--vs NAME``
(a file written with ``--vs avif`` holds AVIF's curve under ``vs``). Prints each curve,
then each other file's BD-rate (PSNR) against the first, over all its points and over
the qualities given, and the PSNR difference at the top point.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from lalic_cli.bench.bdrate import bd_rate


def curve(path: Path, vs: str | None) -> tuple[list[float], list[float], list[float]]:
    doc = json.loads(path.read_text())
    results = doc["vs"][vs]["results"] if vs else doc["results"]
    return results.get("quality", []), results["bpp"], results["psnr-rgb"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("files", type=Path, nargs="+")
    ap.add_argument("--vs", help="take the base file's curve of this classical codec instead of its own run")
    ap.add_argument("--qualities", type=float, nargs=2, metavar=("LO", "HI"),
                    help="also a BD-rate over the points with quality in [LO, HI] (the test curve's)")
    args = ap.parse_args()
    base = curve(args.files[0], args.vs)
    print(f"{args.files[0]}{f' ({args.vs})' if args.vs else ''}: {len(base[1])} points")
    for other in args.files[1:]:
        q, rate, psnr = curve(other, None)
        points = " ".join(f"q{a:g} {b:.4f}/{c:.2f}" for a, b, c in zip(q, rate, psnr))
        line = f"{other}: {points}\n  BD-rate {bd_rate(base[1], base[2], rate, psnr).format()}"
        if args.qualities:
            lo, hi = args.qualities
            keep = [i for i, x in enumerate(q) if lo <= x <= hi]
            sub = bd_rate(base[1], base[2], [rate[i] for i in keep], [psnr[i] for i in keep])
            line += f", q{lo:g}..q{hi:g} {sub.format()}"
        print(f"{line}, top point {psnr[-1] - base[2][-1]:+.2f} dB")


if __name__ == "__main__":
    main()
