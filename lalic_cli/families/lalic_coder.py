"""LALIC's coding plug-in: the strings of its channel groups and hyper-latent in the
container's common shape, on the float or the portable entropy path (``entropy="exact"``)."""

from __future__ import annotations

from typing import Callable

import torch

from ..bitstream import ENTROPY_CODES, LalFile
from ..errors import DecodeError, InputError
from ..portable.latent_codec import portable_latent_codec
from ..refine import compress_latents
from .coding import Coded, tensor_crc


def symbols_crc(y_hat: torch.Tensor) -> int:
    """CRC32 of the quantised latent, to detect a decoder whose entropy model diverged."""
    return tensor_crc(y_hat.round().to(torch.int32))


def _latent_codec(model, entropy: str, arithmetic: int):
    """None (the model's own, float) or the portable CPU copy in the given arithmetic."""
    if entropy not in ENTROPY_CODES:
        raise InputError(f"unknown entropy path {entropy!r} (exact or float)")
    return portable_latent_codec(model, arithmetic) if entropy == "exact" else None


def _coded(model, out: dict) -> Coded:
    strings = [s[0] for s in out["strings"]]
    zh, zw = out["shape"]["hyper"]
    return Coded(strings[:-1], strings[-1], (int(zh), int(zw)), len(model.groups), symbols_crc(out["y_hat"]))


def _latent_shape(model, z_shape: tuple[int, int]) -> dict:
    zh, zw = z_shape
    return {
        "y": [torch.Size((g, 4 * zh, 4 * zw)) for g in model.groups],
        "hyper": torch.Size((zh, zw)),
    }


def compress(model, x: torch.Tensor, quality: float, entropy: str, arithmetic: int) -> Coded:
    latent_codec = _latent_codec(model, entropy, arithmetic)
    return _coded(model, model.compress(x, quality, latent_codec=latent_codec))


def compress_refined(model, entropy: str, arithmetic: int, refined: Callable[[], dict]) -> Coded:
    """``--effort`` above the default: refined latents, coded by the same latent codec."""
    latent_codec = _latent_codec(model, entropy, arithmetic)
    best = refined()
    with torch.inference_mode():
        if latent_codec is None:
            model.float_tables()
            out = compress_latents(model.latent_codec, best["y_hat"], best["z_hat"])
        else:
            out = compress_latents(latent_codec, best["y_hat"].cpu(), best["z_hat"].cpu())
    return _coded(model, out)


def decompress(model, lal: LalFile) -> tuple[torch.Tensor, int]:
    h = lal.header
    if h.num_groups != len(model.groups):
        raise DecodeError(f"file has {h.num_groups} channel groups, the weights have {len(model.groups)}")
    strings = [[s] for s in (*lal.y_strings, lal.z_string)]
    dec = model.decompress(strings, _latent_shape(model, h.z_shape), h.quality,
                           latent_codec=_latent_codec(model, h.entropy, h.arithmetic))
    return dec["x_hat"], symbols_crc(dec["y_hat"])
