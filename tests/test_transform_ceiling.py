"""benchmarks/transform_ceiling.py measures qualities from the model's forward pass; its
numbers mean something only if they agree with real coding."""

import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lalic_cli import decode_bytes, encode_image
from lalic_cli.bitstream import unpack
from lalic_cli.zoo.checkpoint import build_model, load_checkpoint_file

ROOT = Path(__file__).resolve().parents[1]
WEIGHTS = ROOT / "weights" / "lalic-small-vr.safetensors"


def _script():
    spec = importlib.util.spec_from_file_location("transform_ceiling", ROOT / "benchmarks" / "transform_ceiling.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("quality", [2, 6])
def test_forward_measure_agrees_with_real_coding(tmp_path, quality):
    tc = _script()
    crop = Image.open(ROOT / "assets" / "sample.png").convert("RGB").crop((0, 0, 192, 128))
    path = tmp_path / "crop.png"
    crop.save(path)
    model = build_model(load_checkpoint_file(WEIGHTS)).eval()
    bpp, db = tc.measure(model, tc.load(path), [quality])[f"q{quality}"]

    # the float entropy path: the forward pass's own arithmetic, so the two must agree to
    # the last rounding (the portable path's integer means can move a few roundings of y,
    # which benchmarks/portable.py measures on Kodak instead)
    data = encode_image(crop, quality, weights=str(WEIGHTS), entropy="float")
    f = unpack(data)
    payload_bpp = 8 * (sum(map(len, f.y_strings)) + len(f.z_string)) / (192 * 128)
    a = np.asarray(crop, dtype=np.float64)
    b = np.asarray(decode_bytes(data, weights=str(WEIGHTS)).convert("RGB"), dtype=np.float64)
    real_db = 10 * math.log10(255 ** 2 / ((a - b) ** 2).mean())
    assert abs(real_db - db) <= 0.005
    # the ideal code length is a lower bound; the coder adds CompressAI's scale-table
    # rounding (scales up to 13 % wide) and a 4-byte rANS flush per string
    flush_bpp = 8 * 4 * (len(f.y_strings) + 1) / (192 * 128)
    assert bpp <= payload_bpp <= 1.25 * bpp + flush_bpp
