"""Real coding on a CUDA GPU: Kodak encode/decode times, and which devices decode which files.

    python benchmarks/gpu_codec.py KODAK_DIR [--limit 5] [--reps 3]

For the bundled weights (end to end through ``encode_image``/``decode``) and for the
paper's ``full`` config with random weights (``model.compress``/``decompress`` on a
padded tensor; the work does not depend on the values) it prints the median time of
--reps runs after one warm-up, per image, at batch 1. Then it encodes every image on
one device and decodes on the other, and reports whether the decoded symbols match.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from lalic_cli.codec import decode, encode_image, pad_to
from lalic_cli.errors import DecodeError
from lalic_cli.image import open_image, prepare


def _timed(fn) -> tuple[float, object]:
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    r = fn()
    torch.cuda.synchronize()
    return time.perf_counter() - t0, r


def _median(fn, reps: int) -> tuple[float, object]:
    fn()
    runs = [_timed(fn) for _ in range(reps)]
    return statistics.median(t for t, _ in runs), runs[-1][1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("kodak")
    ap.add_argument("--limit", type=int, default=5)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--quality", type=float, default=3)
    a = ap.parse_args()
    files = sorted(Path(a.kodak).glob("*.png"))[: a.limit]
    print(f"device: {torch.cuda.get_device_name()}  torch {torch.__version__}")

    print("\nbundled weights, end to end (ms):  image  encode  decode  bpp  (decode fails: CRC mismatch)")
    for f in files:
        te, data = _median(lambda: encode_image(f, a.quality, device="cuda"), a.reps)
        try:
            td, dec = _median(lambda: decode(data, device="cuda"), a.reps)
            h = dec.header
            print(f"  {f.name}  {1e3 * te:7.1f}  {1e3 * td:7.1f}  {8 * len(data) / (h.width * h.height):.3f}")
        except DecodeError as e:
            print(f"  {f.name}  {1e3 * te:7.1f}  decode on the same GPU failed: {e}")

    from lalic_cli.models import LALIC, get_config

    for config in ("small", "full"):
        torch.manual_seed(0)
        m = LALIC(**get_config(config).kwargs()).eval().cuda()
        m.update(force=True)
        print(f"\n{config} config, random weights, model.compress / decompress (ms):")
        for f in files:
            x, _ = pad_to(prepare(open_image(f)).rgb.cuda(), m.downsampling_factor)
            with torch.inference_mode():
                te, out = _median(lambda: m.compress(x), a.reps)
                td, _ = _median(lambda: m.decompress(out["strings"], out["shape"]), a.reps)
            print(f"  {f.name}  {1e3 * te:7.1f}  {1e3 * td:7.1f}")

    print("\ncross-device decoding (bundled weights, q=%g):" % a.quality)
    for enc, dec in (("cuda", "cpu"), ("cpu", "cuda")):
        ok = 0
        for f in files:
            data = encode_image(f, a.quality, device=enc)
            try:
                decode(data, device=dec)
                ok += 1
            except DecodeError as e:
                print(f"  {f.name}: {e}")
        print(f"  encode {enc} -> decode {dec}: {ok}/{len(files)} decoded")


if __name__ == "__main__":
    main()
