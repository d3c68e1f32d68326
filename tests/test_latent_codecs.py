"""LALIC's checkerboard and Gaussian conditional codecs skip work whose result CompressAI's
throw away; against CompressAI's own classes they must give the same strings and y_hat."""

from __future__ import annotations

import contextlib

import pytest
import torch
from compressai import latent_codecs as compressai_codecs

from lalic_cli import latent_codecs
from lalic_cli.models import LALIC, get_config
from lalic_cli.portable.latent_codec import portable_latent_codec


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    m = LALIC(**get_config("tiny").kwargs()).eval()
    m.update(force=True)
    return m


@contextlib.contextmanager
def as_compressai(lc: torch.nn.Module):
    """``lc`` with each of lalic's latent codecs turned back into the CompressAI class it derives from."""
    swapped = []
    for name in ("CheckerboardLatentCodec", "GaussianConditionalLatentCodec"):
        ours, theirs = getattr(latent_codecs, name), getattr(compressai_codecs, name)
        mods = [m for m in lc.modules() if type(m) is ours]
        assert mods, f"no {name} in the model"
        for m in mods:
            m.__class__ = theirs
        swapped += [(m, ours) for m in mods]
    try:
        yield
    finally:
        for m, ours in swapped:
            m.__class__ = ours


@pytest.mark.parametrize("path", ["float", "portable"])
@pytest.mark.parametrize("spread", [1.0, 300.0])  # 300: symbols far in the tails (escape-coded)
def test_same_strings_and_y_hat_as_compressai(model, path, spread):
    lc = model.latent_codec if path == "float" else portable_latent_codec(model)
    y = model.analysis(torch.rand(1, 3, 128, 128)) * spread
    with torch.inference_mode():
        ours = lc.compress(y)
        decoded = lc.decompress(ours["strings"], ours["shape"])
        with as_compressai(lc):
            theirs = lc.compress(y)
            their_decoded = lc.decompress(theirs["strings"], theirs["shape"])
    assert ours["strings"] == theirs["strings"]
    assert torch.equal(ours["y_hat"], theirs["y_hat"])
    assert torch.equal(decoded["y_hat"], their_decoded["y_hat"])
    assert torch.equal(ours["y_hat"], decoded["y_hat"])  # the encoder's y_hat is what decoding gives


def test_scale_indexes_are_compressais(model):
    """On every table scale, its float neighbours on both sides, the bounds and non-finite
    values, for the float coder's table and the portable one."""
    from lalic_cli.latent_codecs.gaussian_conditional import scale_indexes

    for lc in (model.latent_codec, portable_latent_codec(model)):
        gc = next(m for m in lc.modules() if isinstance(m, compressai_codecs.GaussianConditionalLatentCodec))
        gc = gc.gaussian_conditional
        t = gc.scale_table.float()
        scales = torch.cat([t, torch.nextafter(t, torch.tensor(float("inf"))), torch.nextafter(t, torch.tensor(0.0)),
                            torch.tensor([float("nan"), float("inf"), -float("inf"), 0.0, -1.0, 1e-30, 1e30]),
                            torch.rand(5000) * 2 * t.max()]).view(1, 1, 1, -1)
        assert torch.equal(scale_indexes(gc, scales), gc.build_indexes(scales))
