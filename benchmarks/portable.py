"""The portable entropy path against the float one: R-D cost and time, side by side.

    python benchmarks/portable.py KODAK_DIR [--limit 24] [--qualities 1 2 3 4 5 6] [--reps 1]

For every image and quality three paths code the same image with the bundled weights
(real coding through ``encode_image`` / ``decode``, CPU): the float path, the portable
path in arithmetic 1 (format version 3, what files before version 4 use) and in
arithmetic 2 (version 4, what new files use; docs/portable.md). Prints the mean bpp and
PSNR per quality for each path, the BD-rate of each portable path against float (PSNR),
and the median encode and decode times per image with their ratios to float. The paths
run one after another for each image, in an order that rotates from image to image, so
drift in machine load hits all of them; times are the process's CPU time (the work done,
whatever else the machine runs) and wall time.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from lalic_cli.bench.bdrate import bd_rate
from lalic_cli.bench.metrics import psnr
from lalic_cli.codec import decode, encode_image
from lalic_cli.runtime import cpu_name

# label -> encode_image arguments: "exact" is the portable path, its version picks the arithmetic
PATHS = {
    "float": {"entropy": "float"},
    "portable-1": {"entropy": "exact", "version": 3},
    "portable-2": {"entropy": "exact", "version": 4},
}
CLOCKS = {"cpu": time.process_time, "wall": time.perf_counter}


def _timed(fn) -> tuple[dict[str, float], object]:
    start = {k: c() for k, c in CLOCKS.items()}
    out = fn()
    return {k: c() - start[k] for k, c in CLOCKS.items()}, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("kodak")
    ap.add_argument("--limit", type=int, default=24)
    ap.add_argument("--qualities", type=float, nargs="+", default=[1, 2, 3, 4, 5, 6])
    ap.add_argument("--reps", type=int, default=1, help="timed repetitions per image (median)")
    a = ap.parse_args()
    files = sorted(Path(a.kodak).glob("*.png"))[: a.limit]
    print(f"{cpu_name()}, {torch.get_num_threads()} threads, torch {torch.__version__}, {len(files)} images")
    rows = {p: {q: {"bpp": [], "psnr": [], "enc": [], "dec": []} for q in a.qualities} for p in PATHS}
    names = list(PATHS)
    for i, f in enumerate(files):
        img = Image.open(f).convert("RGB")
        ref = np.asarray(img)
        for q in a.qualities:
            for p in names[i % len(names):] + names[: i % len(names)]:
                kw = PATHS[p]
                encode_image(img, q, device="cpu", **kw)  # warm-up (model load, kernel build, copies)
                enc = [_timed(lambda: encode_image(img, q, device="cpu", **kw)) for _ in range(a.reps)]
                data = enc[-1][1]
                dec = [_timed(lambda: decode(data, device="cpu")) for _ in range(a.reps)]
                r = rows[p][q]
                r["bpp"].append(8 * len(data) / (img.width * img.height))
                r["psnr"].append(psnr(ref, np.asarray(dec[-1][1].image)))
                r["enc"].append({k: statistics.median(t[k] for t, _ in enc) for k in CLOCKS})
                r["dec"].append({k: statistics.median(t[k] for t, _ in dec) for k in CLOCKS})
    print("\n   q" + "".join(f" {p + ' bpp':>15} {p + ' dB':>14}" for p in PATHS))
    for q in a.qualities:
        print(f"{q:>4g}" + "".join(f" {np.mean(rows[p][q]['bpp']):>15.4f} {np.mean(rows[p][q]['psnr']):>14.3f}"
                                   for p in PATHS))
    curve = {p: ([np.mean(rows[p][q]["bpp"]) for q in a.qualities], [np.mean(rows[p][q]["psnr"]) for q in a.qualities])
             for p in PATHS}
    print()
    for p in names[1:]:
        print(f"BD-rate {p} vs float (PSNR): {bd_rate(*curve['float'], *curve[p]).format(3)}")
    print(f"BD-rate portable-2 vs portable-1 (PSNR): {bd_rate(*curve['portable-1'], *curve['portable-2']).format(3)}")
    print(f"\nmedian per image over {len(files)} images x {len(a.qualities)} qualities, seconds (ratio to float)")
    for what in ("enc", "dec"):
        for clock in CLOCKS:
            med = {p: statistics.median(t[clock] for q in a.qualities for t in rows[p][q][what]) for p in PATHS}
            ratios = {p: statistics.median(t[clock] / u[clock] for q in a.qualities
                                           for t, u in zip(rows[p][q][what], rows["float"][q][what])) for p in PATHS}
            print(f"{what}ode {clock:>4}: " + ", ".join(
                f"{p} {med[p]:.3f}" + ("" if p == "float" else f" ({ratios[p]:.2f}x)") for p in PATHS))
    print("(a ratio is the median of the per-image ratios)")


if __name__ == "__main__":
    main()
