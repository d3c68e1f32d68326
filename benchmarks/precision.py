"""What bf16 transforms cost in PSNR and bits: real files, float32 against bf16, on a folder.

    OMP_NUM_THREADS=1 python benchmarks/precision.py ../shared/data/kodak -q 1 2 3 4 5 6

Every image is encoded twice, with g_a in float32 and in bf16 (``LALIC_PRECISION``,
``lalic_cli/precision.py``), and each file decoded twice, with g_s in float32 and in
bf16, through the library's own encode and decode (portable entropy path, default
weights). Decoding checks the symbols' CRC, so every bf16-encoded file decoding at all
shows it decodes with the unchanged decoder. The table gives, per quality, the mean
PSNR (8-bit pixels, as ``lalic bench``) and bpp of the float32 pipeline and the mean
differences of the others from it: g_a alone in bf16, g_s alone, both (encoder and
decoder may run on different CPUs). The rule for using bf16 by default: a cost of at
most 0.02 dB at every quality, for each of them (docs/precision.md).
Needs a CPU with native bf16 (AMX or AVX-512-BF16). Validation data only: nothing is
tuned on it.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

import torch

from lalic_cli.bench.metrics import psnr, to_rgb8
from lalic_cli.codec import decode, encode_prepared
from lalic_cli.image import open_image, prepare
from lalic_cli.precision import native_bf16

PIPELINES = {"float32": ("float32", "float32"), "g_a bf16": ("bf16", "float32"),
             "g_s bf16": ("float32", "bf16"), "both bf16": ("bf16", "bf16")}


def _with_precision(precision: str, fn):
    os.environ["LALIC_PRECISION"] = precision
    try:
        return fn()
    finally:
        del os.environ["LALIC_PRECISION"]


def measure(path: Path, quality: float, weights: str | None) -> dict[str, tuple[float, float]]:
    """``{pipeline: (bpp, PSNR)}`` for one image at one quality."""
    img = prepare(open_image(path))
    ref = to_rgb8(open_image(path))
    files = {p: _with_precision(p, lambda: encode_prepared(img, quality, weights=weights, device="cpu"))
             for p in ("float32", "bf16")}
    out = {}
    for name, (enc, dec) in PIPELINES.items():
        data = files[enc].data
        image = _with_precision(dec, lambda: decode(data, weights=weights, device="cpu").image)
        out[name] = (files[enc].bpp, psnr(ref, to_rgb8(image)))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("images", type=Path, help="a folder of PNGs")
    ap.add_argument("-q", "--quality", type=float, nargs="+", default=[1, 2, 3, 4, 5, 6])
    ap.add_argument("--weights", default=None, help="default: the bundled ones")
    args = ap.parse_args()
    if not native_bf16():
        sys.exit("this CPU has no native bf16 (AMX or AVX-512-BF16): lalic never uses bf16 here")
    paths = sorted(args.images.glob("*.png"))
    if not paths:
        sys.exit(f"no PNG images in {args.images}")
    rows = {q: [] for q in args.quality}
    for q in args.quality:
        for p in paths:
            rows[q].append(measure(p, q, args.weights))
            print(f"q{q:g} {p.name}: " + ", ".join(f"{n} {b:.4f} bpp {d:.3f} dB" for n, (b, d) in rows[q][-1].items()),
                  file=sys.stderr, flush=True)
    others = [n for n in PIPELINES if n != "float32"]
    print(f"\n{len(paths)} images, torch {torch.__version__}, {torch.get_num_threads()} threads; float32: mean bpp "
          "and PSNR; the others: mean difference from float32 (PSNR dB, bpp %)\n")
    print("| quality | float32 bpp | float32 dB | " + " | ".join(f"{n} dB | {n} bpp" for n in others) + " |")
    print("|---" * (3 + 2 * len(others)) + "|")
    mean = statistics.fmean
    overall = {n: [] for n in others}
    for q, rs in rows.items():
        bpp0, db0 = mean(r["float32"][0] for r in rs), mean(r["float32"][1] for r in rs)
        cells = []
        for n in others:
            d_db = mean(r[n][1] - r["float32"][1] for r in rs)
            d_bpp = 100 * (mean(r[n][0] for r in rs) / bpp0 - 1)
            overall[n].append((d_db, d_bpp))
            cells.append(f"{d_db:+.4f} | {d_bpp:+.3f} %")
        print(f"| q{q:g} | {bpp0:.4f} | {db0:.3f} | " + " | ".join(cells) + " |")
    print("| all | | | " + " | ".join(f"{mean(d for d, _ in overall[n]):+.4f} | {mean(b for _, b in overall[n]):+.3f} %"
                                   for n in others) + " |")
    # encoder and decoder may run on different CPUs, so the rule holds for every pipeline
    cost = max(0.0, -min(d for n in others for d, _ in overall[n]))
    print(f"\nlargest mean PSNR cost of bf16 at one quality, any pipeline: {cost:.4f} dB "
          f"({'within' if cost <= 0.02 else 'over'} the 0.02 dB of the rule)")


if __name__ == "__main__":
    main()
