"""Encoder effort: rate, PSNR and time of each effort against the default, side by side.

    python benchmarks/effort.py IMAGE [IMAGE ...] [--qualities 2 5] [--efforts 8 9]
                                [--steps 10 20 40] [--crop 256] [--weights NAME]

Every image is coded at every quality with the default effort and with each effort
asked for (real files through ``encode_prepared``, decoded by ``decode``, CPU). ``--steps``
measures refinement step counts instead of the efforts' own (to set ``effort.STEPS``):
each is coded as the top effort with that many steps. Prints mean bpp, PSNR and encoding
time per quality, then per setting the BD-rate (PSNR) against the default on the mean
curves, the mean change of R + λ·255²·MSE, and the mean encoding time per image.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from lalic_cli import effort, refine
from lalic_cli.bench.bdrate import bd_rate
from lalic_cli.bench.metrics import mse
from lalic_cli.codec import decode, encode_prepared
from lalic_cli.image import prepare
from lalic_cli.runtime import cpu_name
from lalic_cli.zoo.registry import load_model, resolve


def _centre_crop(img: Image.Image, size: int | None) -> Image.Image:
    if not size or (img.width <= size and img.height <= size):
        return img
    w, h = min(size, img.width), min(size, img.height)
    left, top = (img.width - w) // 2, (img.height - h) // 2
    return img.crop((left, top, left + w, top + h))


def _settings(efforts: list[int], steps: list[int]) -> list[tuple[str, int, int | None]]:
    """``(label, effort, steps or None)``, the default first."""
    rows = [(f"e{effort.DEFAULT_EFFORT}", effort.DEFAULT_EFFORT, None)]
    rows += [(f"e{e} ({effort.steps_for(e)} steps)", e, None) for e in efforts if effort.steps_for(e)]
    rows += [(f"{n} steps", effort.EFFORTS[-1], n) for n in steps]
    return rows


def _encode(img: Image.Image, quality: float, level: int, steps: int | None, weights: str | None):
    top = effort.EFFORTS[-1]
    saved = effort.STEPS[top]
    if steps is not None:
        effort.STEPS[top] = steps
    try:
        t0 = time.perf_counter()
        enc = encode_prepared(prepare(img), quality, weights=weights, device="cpu", effort=level)
        return enc, time.perf_counter() - t0
    finally:
        effort.STEPS[top] = saved


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("images", nargs="+", type=Path)
    ap.add_argument("--qualities", type=float, nargs="+", default=[2, 5])
    ap.add_argument("--efforts", type=int, nargs="*", default=[8, 9])
    ap.add_argument("--steps", type=int, nargs="*", default=[])
    ap.add_argument("--crop", type=int, help="centre crop of at most this size (pixels)")
    ap.add_argument("--weights")
    a = ap.parse_args()
    settings = _settings(a.efforts, a.steps)
    print(f"{cpu_name()}, {torch.get_num_threads()} thread(s), torch {torch.__version__}, {len(a.images)} images"
          + (f", centre crops of {a.crop}" if a.crop else ""))
    rows = {s[0]: {q: {"bpp": [], "psnr": [], "cost": [], "time": []} for q in a.qualities} for s in settings}
    for path in a.images:
        img = _centre_crop(Image.open(path).convert("RGB"), a.crop)
        ref = np.asarray(img)
        for q in a.qualities:
            entry = resolve(a.weights, q)
            lmbda = refine.rd_lambda(load_model(entry, "cpu")[0], q, entry.lmbda)
            for label, level, steps in settings:
                enc, seconds = _encode(img, q, level, steps, a.weights)
                err = mse(ref, np.asarray(decode(enc.data, weights=a.weights, device="cpu").image))
                r = rows[label][q]
                r["bpp"].append(enc.bpp)
                r["psnr"].append(10 * np.log10(255**2 / err))
                r["cost"].append(enc.bpp + lmbda * err)
                r["time"].append(seconds)
                print(f"  {path.name} q{q:g} {label}: {enc.bpp:.4f} bpp {r['psnr'][-1]:.3f} dB {seconds:.1f} s",
                      flush=True)
    base = settings[0][0]
    print(f"\n{'setting':<18}" + "".join(f"{f'q{q:g} bpp':>10}{'dB':>8}{'s':>7}" for q in a.qualities))
    for label, *_ in settings:
        cells = [(np.mean(rows[label][q]["bpp"]), np.mean(rows[label][q]["psnr"]), np.mean(rows[label][q]["time"]))
                 for q in a.qualities]
        print(f"{label:<18}" + "".join(f"{b:>10.4f}{p:>8.3f}{t:>7.1f}" for b, p, t in cells))

    def curve(label: str) -> tuple[list[float], list[float]]:
        return ([np.mean(rows[label][q]["bpp"]) for q in a.qualities],
                [np.mean(rows[label][q]["psnr"]) for q in a.qualities])

    print(f"\n{'setting':<18}{'BD-rate':>9}{'R+λD':>9}{'s/image':>9}")
    for label, *_ in settings:
        cost = np.mean([c / c0 - 1 for q in a.qualities
                        for c, c0 in zip(rows[label][q]["cost"], rows[base][q]["cost"])])
        seconds = np.mean([t for q in a.qualities for t in rows[label][q]["time"]])
        bd = bd_rate(*curve(base), *curve(label)) if label != base else None
        print(f"{label:<18}{bd.format(2) if bd else '':>9}{100 * cost:>+8.2f}%{seconds:>9.1f}")


if __name__ == "__main__":
    main()
