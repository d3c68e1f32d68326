"""Broken files, interrupted writes and batches with bad inputs never lose data or crash."""

from __future__ import annotations

import random
from dataclasses import replace

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from lalic_cli.bitstream import pack, unpack
from lalic_cli.cli import main
from lalic_cli.codec import decode, encode_image
from lalic_cli.errors import DecodeError, LalicError
from lalic_cli.fileio import atomic_write


@pytest.fixture
def real_file(tiny_checkpoints) -> bytes:
    rng = np.random.default_rng(3)
    img = Image.fromarray(rng.integers(0, 256, (40, 56, 3), dtype=np.uint8), "RGB")
    return encode_image(img, 3)


def test_truncated_at_every_offset(real_file):
    for n in range(len(real_file)):
        with pytest.raises(LalicError):
            decode(real_file[:n])


def test_byte_flips_everywhere_in_header_and_sampled_payload(real_file):
    header_len = 64
    rng = random.Random(0)
    offsets = list(range(min(header_len, len(real_file)))) + rng.sample(range(len(real_file)), 60)
    for off in offsets:
        bad = bytearray(real_file)
        bad[off] ^= 1 << rng.randrange(8)
        with pytest.raises(LalicError):
            decode(bytes(bad))


def test_payload_garbage_with_valid_crc_is_caught(real_file):
    """A file whose CRCs are right but whose strings are wrong: caught by the symbol CRC."""
    lal = unpack(real_file)
    rng = random.Random(1)
    caught = 0
    for _ in range(40):
        strings = [bytearray(s) for s in lal.y_strings]
        i = rng.randrange(len(strings))
        if not strings[i]:
            continue
        strings[i][rng.randrange(len(strings[i]))] = rng.randrange(256)
        forged = pack(replace(lal, y_strings=[bytes(s) for s in strings]))
        try:
            out = decode(forged)
        except DecodeError:
            caught += 1
            continue
        # Only a change that leaves every symbol intact may decode, and then to the same image.
        assert np.array_equal(np.asarray(out.image), np.asarray(decode(real_file).image))
    assert caught > 0


def test_weights_mismatch_is_refused(real_file, tiny_checkpoints):
    lal = unpack(real_file)
    forged = pack(replace(lal, header=replace(lal.header, weights_hash=b"\x00" * 8)))
    with pytest.raises(LalicError, match="encoded with weights"):
        decode(forged)


def test_interrupted_write_leaves_nothing(tmp_path):
    dest = tmp_path / "out.png"

    def writer(p):
        p.write_bytes(b"partial")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(dest, writer)
    assert list(tmp_path.iterdir()) == []
    dest.write_bytes(b"keep")
    with pytest.raises(LalicError):
        atomic_write(dest, b"new")
    assert dest.read_bytes() == b"keep"


def test_write_into_missing_folder_is_a_user_error(tmp_path):
    """What library callers (bench --plot, exports) meet: a LalicError, not FileNotFoundError."""
    with pytest.raises(LalicError, match="folder .*nodir does not exist"):
        atomic_write(tmp_path / "nodir" / "x.png", b"data")
    assert list(tmp_path.iterdir()) == []


def test_batch_with_one_bad_input_does_the_rest(tiny_checkpoints, sample_png, tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    r = CliRunner().invoke(main, ["encode", str(sample_png), str(bad), "-q", "3", "-o", str(tmp_path)])
    assert r.exit_code == 2
    assert "1 of 2 inputs failed" in r.output and "bad.png" in r.output
    assert (tmp_path / "sample.lal").is_file() and not (tmp_path / "bad.lal").exists()
    assert (tmp_path / "sample.lal").read_bytes() == encode_image(sample_png, 3)


def test_error_classes_come_from_the_package_cheaply(tmp_path):
    """``from lalic_cli import BitstreamError`` works, each exported error is a LalicError, and
    getting the ones callers catch around ``Image.open`` or ``decode`` loads neither torch nor numpy."""
    import json
    import subprocess
    import sys

    code = (
        "import json, sys, lalic_cli\n"
        "from lalic_cli import (BitstreamError, DecodeError, ImageError, InputError, LalicError,\n"
        "                       OutputExistsError, WeightsError)\n"
        "from lalic_cli._compressai import is_deferred\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules if not is_deferred(m)}\n"
        "                        & {'torch', 'numpy', 'PIL', 'compressai'})))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == []

    import lalic_cli

    names = [n for n in lalic_cli.__all__ if n.endswith("Error")]
    assert {"BitstreamError", "WeightsError", "ImageError", "CheckpointError", "LalicError"} <= set(names)
    assert all(issubclass(getattr(lalic_cli, n), lalic_cli.LalicError) for n in names)
    with pytest.raises(lalic_cli.BitstreamError):
        unpack(b"not a lal file")
