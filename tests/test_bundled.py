"""The weights shipped in the package: present, intact, and a working codec at every quality."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from lalic_cli import decode_bytes, encode_image
from lalic_cli.bitstream import unpack
from lalic_cli.resources import data_dir
from lalic_cli.zoo.registry import catalogue, file_sha256, resolve

SAMPLE = data_dir() / "assets" / "sample.png"


def psnr(a: Image.Image, b: Image.Image) -> float:
    x = np.asarray(a, dtype=np.float64)
    y = np.asarray(b, dtype=np.float64)
    return float(10 * np.log10(255.0**2 / np.mean((x - y) ** 2)))


@pytest.fixture(scope="module")
def bundled(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("LALIC_WEIGHTS", str(tmp_path_factory.mktemp("empty")))  # nothing imported
    yield [e for e in catalogue() if e.kind == "bundled"]
    mp.undo()


def test_bundled_weights_present_and_intact(bundled):
    assert bundled, "weights.toml lists no bundled weights"
    total = 0
    for e in bundled:
        assert e.available, f"{e.path} missing"
        assert file_sha256(e.path) == e.sha256
        total += e.path.stat().st_size
    assert total <= 40 * 2**20


@pytest.fixture(scope="module")
def coded(bundled):
    img = Image.open(SAMPLE).convert("RGB")
    return img, {q: encode_image(img, q) for q in (1, 3, 3.5, 4, 6)}


def test_default_weights_are_the_bundled_ones(bundled, coded):
    _, files = coded
    assert unpack(files[3]).header.weights_name == resolve(None, 3).name == bundled[0].name


def test_rate_and_quality_follow_the_quality_setting(coded):
    img, files = coded
    bpp = {q: 8 * len(d) / (img.width * img.height) for q, d in files.items()}
    quality = {q: psnr(img, decode_bytes(d)) for q, d in files.items()}
    assert bpp[1] < bpp[3] < bpp[3.5] < bpp[4] < bpp[6]
    assert quality[1] < quality[3] < quality[6]
    # A working codec, not noise: the sample at q3 reconstructs well at a modest rate.
    assert quality[3] > 26.0 and bpp[3] < 1.5
