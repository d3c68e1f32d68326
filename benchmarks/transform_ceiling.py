"""How close each quality sits to what the transforms alone can reconstruct.

    python benchmarks/transform_ceiling.py ../shared/data/kodak --weights 24167=weights/lalic-small-vr.safetensors

The "ceiling" is the PSNR of ``g_s(g_a(x))`` with no quantisation at all (through the
highest quality's gain and inverse gain, which need not multiply to one): spending more
bits on that quality's latents cannot take it past this. When the best quality sits within a few
tenths of a dB of it, the high rates are limited by the transforms' fidelity, not by
the entropy model or the gain table, and only training the transforms raises them.
Each quality is measured in eval mode (rounded latents): the PSNR is real decoding's
(tests/test_transform_ceiling.py); the bpp is the ideal code length from the model's
likelihoods, a few percent below real files.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from lalic_cli.bench.metrics import ideal_bits, psnr, tensor_to_rgb8
from lalic_cli.image import prepare
from lalic_cli.zoo.checkpoint import build_model, load_checkpoint_file


def load(path: Path) -> torch.Tensor:
    """The image cropped to a multiple of 64 (Kodak's sizes already are): the transforms'
    output then has the input's size, with no padding to account for."""
    x = prepare(Image.open(path)).rgb
    return x[..., : x.shape[-2] // 64 * 64, : x.shape[-1] // 64 * 64]


@torch.no_grad()
def measure(model: torch.nn.Module, x: torch.Tensor, qualities: list[float]) -> dict[str, tuple[float, float]]:
    """``{"ceiling": (nan, dB), "q<n>": (bpp, dB)}`` for one image, PSNR on 8-bit pixels."""
    ref = tensor_to_rgb8(x)
    y = model.analysis(x)
    g = model.gains(max(qualities))
    out = {"ceiling": (math.nan, psnr(ref, tensor_to_rgb8(model.synthesis(y if g is None else y * g[0] * g[1]))))}
    for q in qualities:
        coded = model(x, q if model.variable_rate else None)
        out[f"q{q:g}"] = (ideal_bits(coded["likelihoods"]) / (x.shape[2] * x.shape[3]), psnr(ref, tensor_to_rgb8(coded["x_hat"])))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("images", type=Path, help="an image or a folder of PNGs")
    ap.add_argument("--weights", action="append", required=True, metavar="LABEL=PATH",
                    help="weights to measure (repeat to compare several)")
    ap.add_argument("-q", "--quality", type=float, nargs="+", default=[4, 5, 6])
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    paths = sorted(args.images.glob("*.png")) if args.images.is_dir() else [args.images]
    if not paths:
        raise SystemExit(f"no PNG images in {args.images}")
    images = [load(p) for p in paths]
    cols = ["ceiling"] + [f"q{q:g}" for q in args.quality]
    print(f"{len(paths)} images; mean PSNR in dB (ideal bpp from the likelihoods)")
    print("| weights | " + " | ".join(cols) + " | best quality below ceiling |")
    print("|---" * (len(cols) + 2) + "|")
    for spec in args.weights:
        label, _, path = spec.rpartition("=")
        model = build_model(load_checkpoint_file(path)).eval()
        rows = [measure(model, x, args.quality) for x in images]
        mean = {c: (float(np.mean([r[c][0] for r in rows])), float(np.mean([r[c][1] for r in rows]))) for c in cols}
        cells = [f"{mean['ceiling'][1]:.2f}"] + [f"{mean[c][1]:.2f} ({mean[c][0]:.3f})" for c in cols[1:]]
        gap = mean["ceiling"][1] - mean[cols[-1]][1]
        print(f"| {label or path} | " + " | ".join(cells) + f" | {gap:.2f} dB |")


if __name__ == "__main__":
    main()
