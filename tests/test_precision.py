"""bf16 transforms (lalic_cli/precision.py): used only where the CPU has native bf16 and
asked for, close to float32, and never a change to the symbols or the decoder.

Tolerances: bf16 keeps 8 significant bits (unit roundoff u = 2^-8). In a block only the
matrix products (and the depthwise shift) take bf16 operands and give bf16 results; the
residual stream stays float32, so a block's error scales with its update, not with its
input: measured at about 2u of the update's largest value, asserted at 4u. Through a
whole tiny model with random weights the errors of its 10 blocks add up and the
transforms amplify them: measured up to 1.7e-2 of the largest output, asserted at 5e-2.
A broken path (a scale or a product missing) is off by O(1); float32 agrees to 1e-5.
"""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from lalic_cli import precision
from lalic_cli.models import LALIC, get_config

from test_layers import _block, _plain

U = 2.0**-8


@pytest.fixture
def tiny_model() -> LALIC:
    torch.manual_seed(0)
    model = LALIC(**get_config("tiny").kwargs()).eval()
    model.update(force=True)
    return model


@pytest.fixture
def native(monkeypatch):
    """Pretend the CPU has (True) or lacks (False) native bf16."""

    def set_native(value: bool) -> None:
        monkeypatch.setattr(precision, "native_bf16", lambda: value)

    return set_native


@pytest.mark.parametrize("has_bf16", [False, True])
@pytest.mark.parametrize("asked", ["auto", "float32", "bf16", None])
def test_bf16_only_where_supported_and_asked(monkeypatch, native, has_bf16, asked):
    native(has_bf16)
    if asked is None:
        monkeypatch.delenv("LALIC_PRECISION", raising=False)
    else:
        monkeypatch.setenv("LALIC_PRECISION", asked)
    wanted = asked == "bf16" or (asked in ("auto", None) and precision.AUTO_BF16)
    with torch.inference_mode():
        assert precision.transforms_in_bf16("cpu") == (has_bf16 and wanted)
        assert not precision.transforms_in_bf16("cuda")  # GPUs: not measured, float32
    with torch.enable_grad():  # training and refinement: float32 always
        assert not precision.transforms_in_bf16("cpu", "bf16")


def test_argument_overrides_environment_and_bad_values_are_refused(monkeypatch, native):
    native(True)
    monkeypatch.setenv("LALIC_PRECISION", "bf16")
    with torch.inference_mode():
        assert not precision.transforms_in_bf16("cpu", "float32")
        monkeypatch.setenv("LALIC_PRECISION", "fp8")
        with pytest.raises(ValueError, match="unknown precision"):
            precision.transforms_in_bf16("cpu")


@pytest.mark.parametrize("has_bf16", [False, True])
def test_compress_and_decompress_use_bf16_only_where_supported(monkeypatch, native, tiny_model, has_bf16):
    native(has_bf16)
    tiny_model.precision = "bf16"
    seen = []
    for name in ("analysis", "synthesis"):
        original = getattr(LALIC, name)
        monkeypatch.setattr(LALIC, name, lambda self, x, bf16=False, _f=original: seen.append(bf16) or _f(self, x, bf16))
    with torch.inference_mode():
        out = tiny_model.compress(torch.rand(1, 3, 64, 64))
        tiny_model.decompress(out["strings"], out["shape"])
    assert seen == [has_bf16, has_bf16]


def test_bf16_block_is_close_to_the_formula():
    x = torch.randn(1, 32, 12, 10)
    block = _block(32)
    ref = _plain(block, x)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = block(x.contiguous(memory_format=torch.channels_last))
    assert out.dtype == torch.float32
    update = (ref - x.double()).abs().max()
    assert (out.double() - ref).abs().max() <= 4 * U * update


def test_bf16_transforms_are_close_to_float32(tiny_model):
    x = torch.rand(1, 3, 128, 192)
    with torch.inference_mode():
        y, y_bf16 = tiny_model.analysis(x), tiny_model.analysis(x, bf16=True)
        x_hat, x_hat_bf16 = tiny_model.synthesis(y), tiny_model.synthesis(y, bf16=True)
    for ref, low in ((y, y_bf16), (x_hat, x_hat_bf16)):
        assert low.dtype == torch.float32 and low.shape == ref.shape
        assert not torch.equal(low, ref)  # bf16 did run
        assert (low - ref).abs().max() <= 5e-2 * ref.abs().max()


def test_decoder_symbols_do_not_depend_on_the_synthesis_precision(native, tiny_model):
    """Only x_hat moves: the symbols come from the entropy model, which stays float32."""
    native(True)
    with torch.inference_mode():
        out = tiny_model.compress(torch.rand(1, 3, 128, 128))
        tiny_model.precision = "float32"
        ref = tiny_model.decompress(out["strings"], out["shape"])
        tiny_model.precision = "bf16"
        low = tiny_model.decompress(out["strings"], out["shape"])
    assert torch.equal(low["y_hat"], ref["y_hat"])
    assert not torch.equal(low["x_hat"], ref["x_hat"])
    assert (low["x_hat"] - ref["x_hat"]).abs().max() <= 5e-2


def test_bf16_encoded_files_decode_with_the_float32_decoder(monkeypatch, native, sample_png):
    """Through the library with the bundled weights: decoding checks the symbols' CRC, so
    a file decoding at all means the float32 decoder found the encoder's symbols."""
    from lalic_cli.bench.metrics import psnr, to_rgb8
    from lalic_cli.codec import decode, encode_image

    native(True)
    monkeypatch.setenv("LALIC_PRECISION", "bf16")
    data = encode_image(sample_png, 3, device="cpu")
    monkeypatch.setenv("LALIC_PRECISION", "float32")
    dec = decode(data, device="cpu").image
    ref = decode(encode_image(sample_png, 3, device="cpu"), device="cpu").image
    original = to_rgb8(Image.open(sample_png))
    assert abs(psnr(original, to_rgb8(dec)) - psnr(original, to_rgb8(ref))) < 0.25  # measured 0.05
