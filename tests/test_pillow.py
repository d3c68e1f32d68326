"""The Pillow plugin: Image.open / Image.save on .lal files, on the tiny test weights."""

from __future__ import annotations

import io
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image, UnidentifiedImageError

from lalic_cli import decode_file, encode_image, register_pillow
from lalic_cli.bitstream import BitstreamError
from lalic_cli.cli import main
from lalic_cli.errors import InputError
from lalic_cli.zoo.registry import WeightsError


@pytest.fixture(autouse=True)
def _registered():
    register_pillow()


def test_registration():
    assert Image.registered_extensions()[".lal"] == "LAL"
    assert Image.MIME["LAL"] == "image/x-lal"
    assert "LAL" in Image.OPEN and "LAL" in Image.SAVE


def test_registering_does_not_import_torch():
    code = (
        "import sys; from lalic_cli import register_pillow; register_pillow(); "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'numpy'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_open_reads_the_header_and_decodes_on_load(tiny_checkpoints, sample_png, tmp_path, monkeypatch):
    lal = tmp_path / "photo.lal"
    lal.write_bytes(encode_image(sample_png, 3))
    import lalic_cli.codec as codec

    calls = []
    real = codec.decode_bytes
    monkeypatch.setattr(codec, "decode_bytes", lambda data, **kw: calls.append(kw) or real(data, **kw))
    img = Image.open(lal)
    assert (img.format, img.size, img.mode) == ("LAL", (96, 80), "RGB")
    assert img.info["lal_weights"] == "lalic-mse-q3" and img.info["lal_quality"] == 3.0
    assert calls == []  # nothing decoded yet
    img.load()
    img.load()
    assert len(calls) == 1  # decoded once
    assert np.array_equal(np.asarray(img), np.asarray(decode_file(lal)))


def test_save_matches_the_library_and_the_cli(tiny_checkpoints, sample_png, tmp_path):
    src = Image.open(sample_png)
    dest = tmp_path / "photo.lal"
    src.save(dest, quality=3)
    assert dest.read_bytes() == encode_image(sample_png, 3)
    buf = io.BytesIO()
    src.save(buf, format="LAL", quality="1")  # a string, as -q takes it
    assert buf.getvalue() == encode_image(sample_png, 1)

    # The round trip through Pillow gives exactly the pixels `lalic decode` writes.
    back_png = tmp_path / "back.png"
    r = CliRunner().invoke(main, ["decode", str(dest), "-o", str(back_png), "--quiet"])
    assert r.exit_code == 0 and r.output == ""
    via_pillow = np.asarray(Image.open(dest).convert("RGB"), dtype=np.float64)
    via_cli = np.asarray(Image.open(back_png), dtype=np.float64)
    assert np.array_equal(via_pillow, via_cli)
    original = np.asarray(src, dtype=np.float64)
    mse = np.mean((via_pillow - original) ** 2)
    assert mse > 0  # lossy, and the same loss either way
    assert 10 * np.log10(255**2 / mse) == pytest.approx(10 * np.log10(255**2 / np.mean((via_cli - original) ** 2)))


def test_modes_survive(tiny_checkpoints, sample_png, tmp_path):
    for mode in ("L", "RGBA"):
        img = Image.open(sample_png).convert(mode)
        dest = tmp_path / f"{mode}.lal"
        img.save(dest, quality=3)
        back = Image.open(dest)
        assert back.mode == mode and back.size == img.size
        back.load()
        if mode == "RGBA":
            assert np.array_equal(np.asarray(back)[..., 3], np.asarray(img)[..., 3])  # alpha is lossless


def test_bad_quality_and_options(tiny_checkpoints, sample_png, tmp_path):
    img = Image.open(sample_png)
    for q in (0, 9, 90, "high", None):
        with pytest.raises(InputError, match="quality"):
            img.save(tmp_path / "x.lal", quality=q)
    with pytest.raises(WeightsError):
        img.save(tmp_path / "x.lal", quality=3, weights="no-such-weights")
    with pytest.raises(InputError, match="device"):
        register_pillow(device="tpu")


def test_not_a_lal_file_is_left_to_pillow(tmp_path):
    junk = tmp_path / "junk.lal"
    junk.write_bytes(b"hello world, this is not a lal file")
    with pytest.raises(UnidentifiedImageError):
        Image.open(junk)
    with pytest.raises(UnidentifiedImageError):
        Image.open(junk, formats=["LAL"])


def test_truncated_and_corrupt_files_give_lalic_errors(tiny_checkpoints, sample_png, tmp_path):
    data = encode_image(sample_png, 3)
    bad = tmp_path / "bad.lal"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(BitstreamError, match="truncated .lal file"):
        Image.open(bad)
    flipped = bytearray(data)
    flipped[-10] ^= 0xFF
    bad.write_bytes(bytes(flipped))
    with pytest.raises(BitstreamError, match="corrupted"):
        Image.open(bad)


def test_missing_weights_at_load(weights_dir, tiny_checkpoints, sample_png, tmp_path, monkeypatch):
    lal = tmp_path / "photo.lal"
    lal.write_bytes(encode_image(sample_png, 3))
    monkeypatch.setenv("LALIC_WEIGHTS", str(weights_dir))  # empty: the file's weights are gone
    img = Image.open(lal)
    assert img.size == (96, 80)
    with pytest.raises(WeightsError, match="lalic-mse-q3"):
        img.load()
