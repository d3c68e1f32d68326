"""Do files decode under another thread count? The issue-10 check, for both entropy paths.

    python benchmarks/portability.py KODAK_DIR [--qualities 1 3 6] [--float-qualities 3]
        [--encode-threads 2] [--decode-threads 1] [--decode-isa native|avx2|baseline]

Encodes every image in a subprocess with --encode-threads, decodes in another with
--decode-threads (and, with --decode-isa, the kernels built for no more than that
instruction set: LALIC_KERNEL_ISA), and prints per quality and entropy path how many
files decoded (a failure is the decoder's symbol-CRC refusal).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

_WORKER = r"""
import sys, torch
from pathlib import Path
from lalic_cli.codec import decode, encode_image
from lalic_cli.errors import DecodeError
mode, threads, folder = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3])
torch.set_num_threads(threads)
if mode == "encode":
    for job in sys.argv[4:]:
        src, q, path = job.split("@")
        (folder / f"{Path(src).stem}@{q}@{path}.lal").write_bytes(encode_image(src, float(q), device="cpu", entropy=path))
else:
    for f in sorted(folder.glob("*.lal")):
        try:
            decode(f.read_bytes(), device="cpu")
            print("ok", f.stem)
        except DecodeError:
            print("fail", f.stem)
"""


def _run(mode: str, threads: int, folder: str, *jobs: str, isa: str = "native") -> str:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), LALIC_KERNEL_ISA=isa)
    r = subprocess.run([sys.executable, "-c", _WORKER, mode, str(threads), folder, *jobs],
                       env=env, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(r.stderr[-3000:])
    return r.stdout


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("kodak")
    ap.add_argument("--qualities", type=float, nargs="+", default=[1, 3, 6])
    ap.add_argument("--float-qualities", type=float, nargs="*", default=[3])
    ap.add_argument("--encode-threads", type=int, default=2)
    ap.add_argument("--decode-threads", type=int, default=1)
    ap.add_argument("--decode-isa", choices=["native", "avx2", "baseline"], default="native")
    a = ap.parse_args()
    files = sorted(Path(a.kodak).glob("*.png"))
    jobs = [f"{f}@{q:g}@exact" for f in files for q in a.qualities]
    jobs += [f"{f}@{q:g}@float" for f in files for q in a.float_qualities]
    with tempfile.TemporaryDirectory() as tmp:
        _run("encode", a.encode_threads, tmp, *jobs)
        lines = _run("decode", a.decode_threads, tmp, isa=a.decode_isa).split("\n")
    results: dict[tuple[str, str], list[int]] = {}
    for line in filter(None, lines):
        status, stem = line.split(" ", 1)
        _, q, path = stem.split("@")
        ok_fail = results.setdefault((path, q), [0, 0])
        ok_fail[0 if status == "ok" else 1] += 1
    print(f"{len(files)} images, encoded with {a.encode_threads} threads, decoded with {a.decode_threads}"
          f" ({a.decode_isa} kernels)")
    print(f"{'entropy path':<13}{'q':>4}{'decoded':>9}{'failed':>8}")
    for (path, q), (ok, fail) in sorted(results.items()):
        print(f"{path:<13}{q:>4}{ok:>9}{fail:>8}")


if __name__ == "__main__":
    main()
