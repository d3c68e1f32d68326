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


FLAT = (200, 100, 50)


def flat_round_trip(codec: str, size: tuple[int, int]) -> np.ndarray:
    """A flat image of ``size`` coded at the family's lowest quality and decoded, as int pixels."""
    data = encode_image(Image.new("RGB", size, FLAT), 1, codec=codec, device="cpu")
    return np.asarray(decode_bytes(data, device="cpu"), dtype=np.int64)


@pytest.fixture(scope="module")
def flat_2x2(bundled) -> dict[str, np.ndarray]:
    """What each family makes of a flat 2x2 image: the reference the thin sizes are held to."""
    return {codec: flat_round_trip(codec, (2, 2)) for codec in ("lalic", "mrt")}


@pytest.mark.parametrize("codec", ["lalic", "mrt"])
@pytest.mark.parametrize("size", [(1, 1), (1, 8), (8, 1), (3, 1), (1, 64)])
def test_one_pixel_thin_images_keep_their_colour(flat_2x2, codec, size):
    """Images 1 pixel wide or tall once came back tens to 200 levels off (zero padding)."""
    back = flat_round_trip(codec, size)
    assert back.shape == (size[1], size[0], 3)
    ref = flat_2x2[codec]
    # Both pad to the same flat picture, so the colour must match the 2x2 image's ...
    assert np.abs(back.mean((0, 1)) - ref.mean((0, 1))).max() <= 6
    # ... and no pixel may stray from the input much further than the 2x2 image's do.
    assert np.abs(back - FLAT).max() <= np.abs(ref - FLAT).max() + 10
