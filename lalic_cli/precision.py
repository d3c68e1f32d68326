"""Which arithmetic the analysis and synthesis transforms use on the CPU (docs/precision.md).

bf16 matrix products run on AMX or AVX-512-BF16 units several times faster than float32
ones; elsewhere PyTorch emulates bf16, so it is only ever used where the CPU has them.
bf16 moves ``y`` (so the symbols the encoder picks) and the decoded pixels slightly; the
entropy model, and with it the decoder's symbols, never leaves float32, so any decoder
reads any file.
"""

from __future__ import annotations

import functools
import os

import torch

from .errors import InputError

PRECISIONS = ("auto", "float32", "bf16")
# "auto" is bf16 on a CPU with native bf16: its PSNR cost on Kodak, q1..q6 with the
# bundled weights, is within the 0.02 dB that the rule allows at every quality
# (benchmarks/precision.py, benchmarks/RESULTS.md).
AUTO_BF16 = True


@functools.cache
def native_bf16() -> bool:
    """Whether this CPU computes bf16 products natively (AMX tiles or AVX-512-BF16)."""
    cpu = torch.cpu
    checks = [getattr(cpu, name, None) for name in ("_is_amx_tile_supported", "_is_avx512_bf16_supported")]
    if all(c is None for c in checks):  # a torch without the probes: ask the kernel
        try:
            with open("/proc/cpuinfo") as f:
                flags = next((line.split() for line in f if line.startswith("flags")), [])
        except OSError:
            return False
        return "amx_bf16" in flags or "avx512_bf16" in flags
    return any(c is not None and c() for c in checks)


def requested(precision: str | None = None) -> str:
    """``precision``, else ``$LALIC_PRECISION``, else ``auto``; checked."""
    choice = precision or os.environ.get("LALIC_PRECISION") or "auto"
    if choice not in PRECISIONS:
        raise InputError(f"unknown precision {choice!r} (LALIC_PRECISION: {', '.join(PRECISIONS)})")
    return choice


def transforms_in_bf16(device: torch.device | str, precision: str | None = None) -> bool:
    """Whether g_a and g_s run in bf16 on ``device``: inference on a CPU with native bf16,
    when ``precision`` (or ``$LALIC_PRECISION``) asks for it, or ``auto`` and AUTO_BF16."""
    choice = requested(precision)
    if choice == "float32" or torch.device(device).type != "cpu" or torch.is_grad_enabled():
        return False
    return (choice == "bf16" or AUTO_BF16) and native_bf16()

