"""MRT's coding plug-in: the strings of its bit groups over 256x256 windows, no z string,
always on the portable entropy path, ``"exact"`` (its context model is portable)."""

from __future__ import annotations

import torch

from ..bitstream import LalFile
from ..errors import DecodeError, InputError
from .coding import Coded, tensor_crc


def bits_crc(bits: torch.Tensor) -> int:
    """CRC32 of MRT's coded bits (0/1 bytes), the counterpart of LALIC's symbols CRC."""
    return tensor_crc(bits.to(torch.uint8))


def _groups(model, quality: float) -> int:
    try:
        return model.groups_for(quality)
    except ValueError as e:
        raise InputError(str(e)) from None


def compress(model, x: torch.Tensor, quality: float, entropy: str, arithmetic: int) -> Coded:
    if entropy != "exact":
        raise InputError("MRT files always use the exact entropy path (its context model is portable)")
    groups = _groups(model, quality)
    out = model.compress(x, quality, arithmetic)
    rows, cols = out["shape"]
    return Coded(out["strings"], b"", (int(rows), int(cols)), groups, bits_crc(out["bits"]))


def decompress(model, lal: LalFile) -> tuple[torch.Tensor, int]:
    h = lal.header
    groups = _groups(model, h.quality)
    if h.num_groups != groups:
        raise DecodeError(f"file has {h.num_groups} bit groups, these weights code {groups} at quality {h.quality:g}")
    dec = model.decompress(lal.y_strings, h.z_shape, h.quality, h.arithmetic)
    return dec["x_hat"], bits_crc(dec["bits"])
