"""The portable entropy path against the float one: R-D cost and time, side by side.

    python benchmarks/portable.py KODAK_DIR [--limit 24] [--qualities 1 2 3 4 5 6] [--reps 3]

For every image and quality both paths code the same image with the bundled weights
(real coding through ``encode_image`` / ``decode``, CPU). Prints the mean bpp and PSNR
per quality for each path, the BD-rate of portable against float (PSNR), and the median
encode and decode times per image with their ratio. Encodes alternate between the two
paths, so drift in machine load hits both.
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

PATHS = ("float", "exact")  # the names ``encode_image`` takes: "exact" is the portable path


def _timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


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
    for f in files:
        img = Image.open(f).convert("RGB")
        ref = np.asarray(img)
        for q in a.qualities:
            for p in PATHS:
                encode_image(img, q, device="cpu", entropy=p)  # warm-up (model load, kernel build)
                enc = [_timed(lambda: encode_image(img, q, device="cpu", entropy=p)) for _ in range(a.reps)]
                data = enc[-1][1]
                dec = [_timed(lambda: decode(data, device="cpu")) for _ in range(a.reps)]
                r = rows[p][q]
                r["bpp"].append(8 * len(data) / (img.width * img.height))
                r["psnr"].append(psnr(ref, np.asarray(dec[-1][1].image)))
                r["enc"].append(statistics.median(t for t, _ in enc))
                r["dec"].append(statistics.median(t for t, _ in dec))
    print(f"\n{'q':>4} {'float bpp':>10} {'float dB':>9} {'portable bpp':>13} {'portable dB':>12}")
    for q in a.qualities:
        fl, ex = rows["float"][q], rows["exact"][q]
        print(f"{q:>4g} {np.mean(fl['bpp']):>10.4f} {np.mean(fl['psnr']):>9.3f} "
              f"{np.mean(ex['bpp']):>13.4f} {np.mean(ex['psnr']):>12.3f}")
    curve = {p: ([np.mean(rows[p][q]["bpp"]) for q in a.qualities], [np.mean(rows[p][q]["psnr"]) for q in a.qualities])
             for p in PATHS}
    bd = bd_rate(*curve["float"], *curve["exact"])
    print(f"\nBD-rate portable vs float (PSNR): {bd.format(3)}")
    for what in ("enc", "dec"):
        fl = statistics.median(t for q in a.qualities for t in rows["float"][q][what])
        ex = statistics.median(t for q in a.qualities for t in rows["exact"][q][what])
        print(f"{what}ode median per image: float {fl:.3f} s, portable {ex:.3f} s, ratio {ex / fl:.2f}")


if __name__ == "__main__":
    main()
