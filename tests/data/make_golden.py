"""Regenerate the golden .lal files of tests/test_portable.py (a deliberate act).

    python tests/data/make_golden.py

Writes, for each case, ``NAME.lal`` (encoded with the bundled weights of its family
and the exact entropy path, in its format version) and ``NAME.png`` (its decoding on
this machine), and ``golden.json`` with the symbol CRC, the sha256 of the decoded pixels
and the machine that made them. Every case is written twice: as version 3 (arithmetic 1
of docs/portable.md, what files before version 4 hold) under its name, and as version 4
(arithmetic 2) under ``v4-NAME``. Run it again only when the bundled weights or the
format change on purpose; the test then decodes these files on whatever CPU it runs on.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
from pathlib import Path

import numpy as np
from PIL import Image

from lalic_cli.bitstream import unpack
from lalic_cli.codec import decode, encode_image
from lalic_cli.runtime import cpu_name

os.environ["LALIC_PRECISION"] = "float32"  # the reference transforms, which the test decodes with
HERE = Path(__file__).resolve().parent / "golden"
ROOT = Path(__file__).resolve().parents[2]

# (name, crop box of assets/sample.png, colour mode, quality, codec)
CASES = [
    ("rgb-q1", (0, 0, 96, 80), "RGB", 1.0, "lalic"),
    ("rgb-q3.5", (100, 40, 196, 120), "RGB", 3.5, "lalic"),
    ("rgb-q6", (200, 100, 264, 164), "RGB", 6.0, "lalic"),
    ("l-q3", (40, 60, 120, 140), "L", 3.0, "lalic"),
    ("rgba-q2", (150, 0, 230, 64), "RGBA", 2.0, "lalic"),
    ("mrt-q1", (0, 0, 320, 224), "RGB", 1.0, "mrt"),
    ("mrt-q3", (30, 20, 300, 200), "RGB", 3.0, "mrt"),
]
# (format version, name prefix): 3 keeps the names of the files made before version 4
VERSIONS = [(3, ""), (4, "v4-")]


def case_image(box, mode: str) -> Image.Image:
    img = Image.open(ROOT / "assets" / "sample.png").convert("RGB").crop(box)
    if mode == "RGBA":
        alpha = Image.linear_gradient("L").resize(img.size)
        img = img.convert("RGBA")
        img.putalpha(alpha)
        return img
    return img.convert(mode)


def pixel_hash(img: Image.Image) -> str:
    return hashlib.sha256(np.asarray(img).tobytes()).hexdigest()


def main() -> None:
    HERE.mkdir(parents=True, exist_ok=True)
    manifest = {"machine": f"{platform.machine()}, {cpu_name()}", "files": {}}
    for version, prefix in VERSIONS:
        for case, box, mode, q, codec in CASES:
            name = prefix + case
            data = encode_image(case_image(box, mode), q, device="cpu", codec=codec, version=version)
            (HERE / f"{name}.lal").write_bytes(data)
            img = decode(data, device="cpu").image
            img.save(HERE / f"{name}.png")
            manifest["files"][name] = {"quality": q, "mode": mode, "codec": codec, "version": version,
                                       "symbols_crc": f"{unpack(data).header.symbols_crc:08x}",
                                       "pixels_sha256": pixel_hash(img)}
            print(name, len(data), "bytes")
    (HERE / "golden.json").write_text(json.dumps(manifest, indent=1) + "\n")


if __name__ == "__main__":
    main()
