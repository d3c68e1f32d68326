"""Encoder effort (``--effort``): the default is today's encoder byte for byte; higher
efforts refine the latents, and the unchanged decoder reads the result on any thread
count. Refinement runs a test-only handful of steps on tiny images."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from conftest import ROOT
from lalic_cli import codec, effort
from lalic_cli.cli import main
from lalic_cli.errors import InputError

STEPS = 30


@pytest.fixture(scope="module")
def image() -> Image.Image:
    return Image.open(ROOT / "assets" / "sample.png").convert("RGB").crop((64, 32, 192, 128))


@pytest.fixture
def few_steps(monkeypatch):
    monkeypatch.setitem(effort.STEPS, 8, STEPS)


@pytest.fixture
def scores(monkeypatch) -> list[dict]:
    """What each refinement scored (its best latents), kept by wrapping ``refine``."""
    kept = []

    def spy(*args, **kwargs):
        kept.append(refine(*args, **kwargs))
        return kept[-1]

    refine = codec.refine
    monkeypatch.setattr(codec, "refine", spy)
    return kept


def mse(a: Image.Image, b: Image.Image) -> float:
    return float(np.mean((np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)) ** 2))


@pytest.mark.parametrize("value", ["0", "10", "x"])
def test_bad_effort_is_one_error_line_and_exit_2(value, tmp_path):
    r = CliRunner().invoke(main, ["encode", "--effort", value, str(tmp_path / "nope.png")])
    assert r.exit_code == 2
    assert r.output.startswith("lalic: error: effort must be an integer from 1 to 9")
    assert len(r.output.strip().splitlines()) == 1
    r = CliRunner().invoke(main, ["bench", str(tmp_path), "-e", value])
    assert r.exit_code == 2 and r.output.startswith("lalic: error: effort") and len(r.output.splitlines()) == 1


def test_bad_effort_in_the_library_and_plugin(image, tmp_path):
    from lalic_cli import register_pillow

    for value in (0, 10, "x", 2.5, True):
        with pytest.raises(InputError, match="effort must be"):
            codec.encode_image(image, 3, effort=value)
    register_pillow()
    with pytest.raises(InputError, match="effort must be"):
        image.save(tmp_path / "x.lal", effort="x")


def test_default_effort_is_todays_encoder(image):
    """Efforts up to the default are ``model.compress`` (the strings it gives, byte for byte)."""
    from lalic_cli.bitstream import unpack
    from lalic_cli.image import prepare
    from lalic_cli.portable.latent_codec import portable_latent_codec
    from lalic_cli.zoo.registry import load_model, resolve

    data = codec.encode_image(image, 3, device="cpu")
    assert all(codec.encode_image(image, 3, device="cpu", effort=e) == data for e in (1, 7, "7"))
    model, _ = load_model(resolve(None, 3), "cpu")
    x, _ = codec.pad_to(prepare(image).rgb, model.downsampling_factor)
    with torch.inference_mode():
        out = model.compress(x, 3, latent_codec=portable_latent_codec(model))
    lal = unpack(data)
    assert [*lal.y_strings, lal.z_string] == [s[0] for s in out["strings"]]


def test_refined_file_decodes_and_lowers_the_rd_cost(image, tmp_path, few_steps, scores):
    from lalic_cli import decode_file
    from lalic_cli.refine import rd_lambda
    from lalic_cli.zoo.registry import load_model, resolve

    q = 2.5
    steps_seen = []
    enc = codec.encode_prepared(codec.prepare(image), q, device="cpu", effort=8,
                                on_step=lambda i, n: steps_seen.append((i, n)))
    assert steps_seen[-1] == (STEPS, STEPS) and len(steps_seen) == STEPS
    path = tmp_path / "refined.lal"
    path.write_bytes(enc.data)
    refined = decode_file(path, device="cpu")
    (score,) = scores
    psnr = 10 * np.log10(255**2 / mse(image, refined))
    assert abs(psnr - score["psnr"]) < 0.1  # the decoded image is what refinement scored
    assert score["loss"] < score["loss0"]

    # R + λ·MSE of real files: bytes and decoded pixels
    plain = codec.encode_image(image, q, device="cpu")
    lmbda = rd_lambda(load_model(resolve(None, q), "cpu")[0], q)
    assert lmbda == pytest.approx((0.0035 * 0.0067) ** 0.5)  # between q2 and q3, geometrically
    pixels = image.width * image.height

    def cost(data: bytes) -> float:
        return 8 * len(data) / pixels + lmbda * mse(image, codec.decode_bytes(data, device="cpu"))

    assert cost(enc.data) < cost(plain)


def test_official_weights_refine_with_their_lambda(image, tiny_checkpoints, few_steps, scores):
    """Fixed-rate weights (tiny official layout here) use the λ of weights.toml."""
    enc = codec.encode_prepared(codec.prepare(image), 1, device="cpu", effort=8)
    assert enc.entry.kind == "official" and enc.entry.lmbda == 0.0018
    assert codec.decode_bytes(enc.data, device="cpu").size == image.size
    (score,) = scores
    assert score["loss"] <= score["loss0"]


def test_encode_command_takes_effort(image, tiny_checkpoints, few_steps, tmp_path):
    src = tmp_path / "in.png"
    image.save(src)
    r = CliRunner().invoke(main, ["encode", str(src), "-q", "3", "--effort", "8", "-o", str(tmp_path / "a.lal")])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(main, ["decode", str(tmp_path / "a.lal"), "-o", str(tmp_path / "a.png")])
    assert r.exit_code == 0 and Image.open(tmp_path / "a.png").size == image.size


def test_refinement_too_large_for_memory_is_refused():
    """Autograd keeps g_s's activations: a 16384x16384 image would need hundreds of GB."""
    from lalic_cli.refine import check_refinement_fits
    from lalic_cli.zoo.registry import load_model, resolve

    model, _ = load_model(resolve(None, 3), "cpu")
    check_refinement_fits(model, 512 * 384, "cpu")
    with pytest.raises(InputError, match="refining this image's latents"):
        check_refinement_fits(model, 16384 * 16384, "cpu")


def test_mrt_has_no_refinement(image):
    with pytest.raises(InputError, match="effort 8 refines LALIC"):
        codec.encode_image(image, 1, codec="mrt", effort=8)


_SCRIPT = r"""
import sys, torch
from pathlib import Path
from PIL import Image
from lalic_cli import effort
from lalic_cli.codec import decode, encode_image
out = Path(sys.argv[1])
effort.STEPS[8] = 20
img = Image.open(sys.argv[2]).convert("RGB").crop((64, 32, 128, 96))
torch.set_num_threads(2)
(out / "refined.lal").write_bytes(encode_image(img, 3, device="cpu", effort=8))
(out / "plain.lal").write_bytes(encode_image(img, 3, device="cpu"))
for threads in (1, 2):
    torch.set_num_threads(threads)
    decode((out / "refined.lal").read_bytes(), device="cpu").image.save(out / f"{threads}.png")
"""


def test_refined_file_decodes_alike_on_1_and_2_threads(tmp_path):
    """Encoded with 2 threads, decoded with 1 and with 2: the symbol CRC passes both times
    (the same symbols) and the pixels agree within 1, as for unrefined files."""
    r = subprocess.run([sys.executable, "-c", _SCRIPT, str(tmp_path), str(ROOT / "assets" / "sample.png")],
                       env=dict(os.environ, OMP_NUM_THREADS="2"), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert (tmp_path / "refined.lal").read_bytes() != (tmp_path / "plain.lal").read_bytes()
    a = np.asarray(Image.open(tmp_path / "1.png"), dtype=np.int32)
    b = np.asarray(Image.open(tmp_path / "2.png"), dtype=np.int32)
    assert np.abs(a - b).max() <= 1
