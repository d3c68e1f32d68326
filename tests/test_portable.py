"""Portable files (issue 10): files written with the portable entropy path decode to the
same symbols under other thread counts, another BiWKV implementation for the
transforms, and on whatever CPU runs this suite (golden files from the build machine)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import KODAK, ROOT

GOLDEN = ROOT / "tests" / "data" / "golden"


def max_diff(a: Image.Image, b: Image.Image) -> int:
    assert a.size == b.size and a.mode == b.mode
    return int(np.abs(np.asarray(a, dtype=np.int32) - np.asarray(b, dtype=np.int32)).max())


@pytest.mark.parametrize("name", sorted(json.loads((GOLDEN / "golden.json").read_text())["files"]))
def test_golden_files_decode_here(name):
    """Made on the build machine (tests/data/make_golden.py); the decoder itself checks the
    symbol CRC, so decoding at all proves the entropy path agreed bit for bit. Pixels come
    from the float synthesis and may differ by one level on another CPU."""
    from lalic_cli.codec import decode

    entry = json.loads((GOLDEN / "golden.json").read_text())["files"][name]
    dec = decode((GOLDEN / f"{name}.lal").read_bytes(), device="cpu")
    assert dec.header.entropy == "exact"
    assert dec.header.family == entry.get("codec", "lalic")
    assert dec.header.version == entry.get("version", 3)
    assert f"{dec.header.symbols_crc:08x}" == entry["symbols_crc"]
    assert dec.image.mode == entry["mode"]
    assert max_diff(dec.image, Image.open(GOLDEN / f"{name}.png")) <= 1


_SCRIPT = r"""
import sys, torch
from pathlib import Path
from PIL import Image
from lalic_cli.codec import decode, encode_image
torch.set_num_threads(int(sys.argv[2]))
out = Path(sys.argv[3])
if sys.argv[1] == "encode":
    for p in sys.argv[4:]:
        src, q = p.rsplit("@", 1)
        img = Image.open(src).convert("RGB")
        if img.width > 256:  # a 256x192 crop of the middle keeps the test quick
            l, t = (img.width - 256) // 2, (img.height - 192) // 2
            img = img.crop((l, t, l + 256, t + 192))
        (out / f"{Path(src).stem}-q{q}.lal").write_bytes(encode_image(img, float(q), device="cpu"))
else:
    for f in sorted(out.glob("*.lal")):
        decode(f.read_bytes(), device="cpu").image.save(f.with_suffix("." + sys.argv[1] + ".png"))
        print("ok", f.name)
"""


def _run(tmp_path, *args, env_extra=None):
    env = dict(os.environ, OMP_NUM_THREADS=args[1], **(env_extra or {}))
    r = subprocess.run([sys.executable, "-c", _SCRIPT, *args], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=1200)
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout


def test_files_decode_under_other_thread_counts_and_biwkv_paths(tmp_path):
    """Encode with 2 threads; decode with 1 thread, and with the PyTorch BiWKV for the
    transforms: every file decodes (same symbols), and the pixels agree within 1."""
    sources = [str(ROOT / "assets" / "sample.png")]
    if KODAK.exists():
        sources += [str(KODAK / f"kodim{i:02d}.png") for i in (1, 4, 8, 13, 19, 23)]
    jobs = [f"{s}@{q}" for s in sources for q in (1, 3, 6)]
    _run(tmp_path, "encode", "2", str(tmp_path), *jobs)
    assert len(list(tmp_path.glob("*.lal"))) == len(jobs)
    one = _run(tmp_path, "one", "1", str(tmp_path))
    torch_path = _run(tmp_path, "torch", "1", str(tmp_path), env_extra={"LALIC_BIWKV": "torch"})
    assert one.count("ok") == torch_path.count("ok") == len(jobs)
    for f in tmp_path.glob("*.one.png"):
        assert max_diff(Image.open(f), Image.open(str(f).replace(".one.", ".torch."))) <= 1


@pytest.mark.parametrize("isa", ["avx2", "baseline"])
def test_golden_files_decode_with_another_instruction_set(isa):
    """The golden files (made with another build) decode with the portable kernels built
    for AVX2 only or for plain x86-64: other vector widths and instructions (pmaddwd for
    vpdpwssd, 4 float64 lanes for 8), the same bits."""
    from lalic_cli.kernels import _cpu_flags

    native = _cpu_flags()[0]
    if "-mavx2" not in native or (isa == "avx2" and "-mavx512f" not in native):
        pytest.skip(f"this machine builds no more than {isa} already")
    code = ("import sys; from pathlib import Path; from lalic_cli.codec import decode; "
            "[decode(f.read_bytes(), device='cpu') for f in sorted(Path(sys.argv[1]).glob('*.lal'))]; print('ok')")
    env = dict(os.environ, LALIC_KERNEL_ISA=isa, OMP_NUM_THREADS="1")
    r = subprocess.run([sys.executable, "-c", code, str(GOLDEN)], env=env, capture_output=True, text=True, timeout=1200)
    assert r.returncode == 0 and r.stdout.strip().endswith("ok"), r.stderr[-2000:]


def test_unknown_kernel_isa_is_a_user_error(tmp_path):
    """A mistyped ``LALIC_KERNEL_ISA`` is the user's error (one line, exit 2, no file), not
    a kernel build to fall back from with warnings."""
    out = tmp_path / "x.lal"
    env = dict(os.environ, LALIC_KERNEL_ISA="avx3", OMP_NUM_THREADS="1")
    r = subprocess.run([sys.executable, "-m", "lalic_cli.cli", "encode", str(ROOT / "assets" / "sample.png"),
                        "-o", str(out)], env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 2, r.stderr[-2000:]
    assert r.stderr == "lalic: error: unknown LALIC_KERNEL_ISA 'avx3' (one of native, avx2, baseline)\n"
    assert not out.exists()


def test_float_entropy_path_is_still_written_and_read(tmp_path):
    """``entropy="float"`` keeps the reference path (the official bitstreams' semantics)."""
    from lalic_cli.codec import decode, encode_image

    img = Image.open(ROOT / "assets" / "sample.png").convert("RGB").crop((0, 0, 128, 96))
    data = encode_image(img, 3, device="cpu", entropy="float")
    dec = decode(data, device="cpu")
    assert dec.header.entropy == "float"
    exact = decode(encode_image(img, 3, device="cpu"), device="cpu")
    assert exact.header.entropy == "exact"
    # the portable path codes the same model: pixels agree closely
    a = np.asarray(dec.image, dtype=np.float64)
    b = np.asarray(exact.image, dtype=np.float64)
    assert np.abs(a - b).mean() < 1.0


def test_unknown_entropy_path_is_a_user_error():
    from lalic_cli.codec import encode_image
    from lalic_cli.errors import InputError

    with pytest.raises(InputError, match="entropy path"):
        encode_image(Image.new("RGB", (8, 8)), 3, entropy="fixed")


def test_info_shows_the_entropy_path_and_its_arithmetic():
    for name, version in (("rgb-q1", 3), ("v4-rgb-q1", 4)):
        r = subprocess.run([sys.executable, "-m", "lalic_cli.cli", "info", "--json", str(GOLDEN / f"{name}.lal")],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        fields = json.loads(r.stdout)
        assert fields["entropy_path"] == "exact"
        assert (fields["format_version"], fields["arithmetic"]) == (version, version - 2)
