"""Images too large for the memory left are refused up front, with a message."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from lalic_cli import encode_image, memory
from lalic_cli.cli import main
from lalic_cli.errors import InputError
from lalic_cli.models import LALIC, get_config


def test_estimate_grows_with_pixels_and_width():
    full, small = (LALIC(**get_config(c).kwargs()) for c in ("full", "small"))
    kodak, uhd = memory.estimate_peak_bytes(full, 512, 768), memory.estimate_peak_bytes(full, 2160, 3840)
    assert memory.estimate_peak_bytes(small, 2160, 3840) < uhd
    fixed = memory.estimate_peak_bytes(full, 0, 0)  # weights and overhead
    assert (uhd - fixed) / (kodak - fixed) == pytest.approx(3840 * 2176 / (512 * 768))  # linear in padded pixels
    # padding: a 1-pixel larger image costs a whole 64-pixel stripe more
    assert memory.estimate_peak_bytes(full, 513, 768) > kodak


def test_available_memory_is_known_on_linux():
    if not sys.platform.startswith("linux"):
        pytest.skip("reads /proc/meminfo")
    have = memory.available_bytes("cpu")
    assert have is not None and 0 < have < 1 << 50


def test_too_large_for_memory_is_refused(tiny_checkpoints, sample_png, monkeypatch, tmp_path):
    monkeypatch.setattr(memory, "available_bytes", lambda device: 1_000_000)
    with pytest.raises(InputError, match=r"96x80 image needs about [\d.]+ [MG]B more memory .* 1 MB is available"):
        encode_image(sample_png, 3)
    out = tmp_path / "x.lal"
    r = CliRunner().invoke(main, ["encode", str(sample_png), "-o", str(out)])
    assert r.exit_code == 2
    assert r.output.count("\n") == 1 and "lalic: error:" in r.output and "1 MB is available" in r.output
    assert not out.exists()


def test_decoding_checks_memory_too(tiny_checkpoints, sample_png, monkeypatch):
    from lalic_cli import decode_bytes

    data = encode_image(sample_png, 3)
    monkeypatch.setattr(memory, "available_bytes", lambda device: 1)
    with pytest.raises(InputError, match="needs about"):
        decode_bytes(data)


def test_what_is_already_resident_is_not_counted_twice(monkeypatch):
    model = LALIC(**get_config("full").kwargs())
    image = memory.estimate_peak_bytes(model, 2160, 3840) - memory.estimate_peak_bytes(model, 0, 0)
    monkeypatch.setattr(memory, "_resident_bytes", lambda: 0)
    fresh = memory.additional_bytes(model, 2160, 3840, "cpu")
    monkeypatch.setattr(memory, "_resident_bytes", lambda: 1 << 40)
    assert memory.additional_bytes(model, 2160, 3840, "cpu") == image < fresh
    assert memory.additional_bytes(model, 2160, 3840, "cuda") == image


def test_unknown_available_memory_does_not_block(tiny_checkpoints, sample_png, monkeypatch):
    monkeypatch.setattr(memory, "available_bytes", lambda device: None)
    assert encode_image(sample_png, 3)[:4] == b"LAL\x89"


_MEASURE = """
import json, resource, sys
import numpy as np
from PIL import Image
from lalic_cli import encode_image, memory
from lalic_cli.runtime import tune_allocator
from lalic_cli.zoo.registry import load_model, resolve
tune_allocator()
h, w = 1024, 1536
rng = np.random.default_rng(0)
img = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), "RGB")
encode_image(img, 3)
model, _ = load_model(resolve(None, 3), "cpu")
print(json.dumps({"peak": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                  "estimate": memory.estimate_peak_bytes(model, h, w)}))
"""


def test_estimate_bounds_the_measured_peak(tmp_path):
    """A real encode (bundled weights, 1.5 Mpixel) in a fresh process stays under the estimate."""
    if not sys.platform.startswith("linux"):
        pytest.skip("ru_maxrss is in kilobytes on Linux only")
    p = subprocess.run([sys.executable, "-c", _MEASURE], capture_output=True, text=True, cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-2000:]
    r = json.loads(p.stdout.strip().splitlines()[-1])
    assert r["peak"] < r["estimate"], r


def test_heap_is_sized_for_the_image(monkeypatch):
    """Once the CLI has tuned the allocator, an image whose maps exceed the reused heap's
    block cap moves every big block out of the heap (mixed, the heap fragments: 9.5 GB
    for a 4K decode instead of 6.1); a Kodak-sized one keeps them all in it."""
    from lalic_cli import runtime

    calls = []
    monkeypatch.setattr(runtime, "_mallopt", lambda: lambda option, value: calls.append((option, value)) or 1)
    monkeypatch.setattr(runtime, "_tuned", False)
    monkeypatch.setattr(memory, "available_bytes", lambda device: None)
    full = LALIC(**get_config("full").kwargs())
    assert memory.map_bytes(full, 2160, 3840) == 96 // 4 * 3840 * 2176 * 4  # first-stage float32 map
    memory.check_fits(full, 2160, 3840, "cpu")
    assert calls == []  # untuned (a library user): the allocator is left alone
    assert runtime.tune_allocator()
    calls.clear()
    memory.check_fits(full, 512, 768, "cpu")
    memory.check_fits(full, 2160, 3840, "cpu")
    memory.check_fits(full, 2160, 3840, "cuda")
    assert calls == [(runtime._M_MMAP_THRESHOLD, runtime._HEAP_MAX_BLOCK),
                     (runtime._M_MMAP_THRESHOLD, runtime._HEAP_MAX_BLOCK_LARGE)]
