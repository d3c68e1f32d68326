"""Peak-memory estimate, so that an image too large for the machine is refused up front
with a message instead of being killed by the out-of-memory killer half-way."""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path

import torch

from .errors import InputError
from .runtime import fit_allocator

# At the peak of a first-stage (or last-stage) Bi-RWKV block, about four map-sized
# float32 tensors of the first stage's width live at once (the block's input, the
# BiWKV keys, values and output), plus the transposed conv around them: 5.5 maps.
# The image itself is held several times over (8-bit, float, padded, decoded):
# 64 bytes per pixel. Measured peaks at 3840x2160 (benchmarks/RESULTS.md): full
# config 5.34 GB encode / 6.05 GB decode (this estimate: 7.1 GB); bundled small
# config 2.52 / 3.13 GB (estimate: 3.7 GB).
MAPS_AT_PEAK = 5.5
BYTES_PER_PIXEL = 64
OVERHEAD_BYTES = 3 << 29  # 1.6 GB: the interpreter, torch (0.95 GB measured before any coding), the coder
# The Bi-RWKV blocks keep GEMM-ready copies of their linear weights (layers/rwkv.py):
# float32, plus bf16 ones where the transforms run in bf16.
GEMM_COPIES = 1.5


def _padded_pixels(model: torch.nn.Module, height: int, width: int) -> int:
    multiple = getattr(model, "downsampling_factor", 64)
    return math.ceil(height / multiple) * multiple * math.ceil(width / multiple) * multiple


def _peak_floats_per_pixel(model: torch.nn.Module) -> float:
    # a model may state its own peak (MRT: the generator's last maps); LALIC's is its first stage
    return getattr(model, "peak_floats_per_pixel", None) or MAPS_AT_PEAK * model.g_a[0].out_channels / 4


def map_bytes(model: torch.nn.Module, height: int, width: int) -> int:
    """Bytes of one float32 map at the model's peak: its largest single tensor."""
    return int(_peak_floats_per_pixel(model) / MAPS_AT_PEAK * _padded_pixels(model, height, width) * 4)


def estimate_peak_bytes(model: torch.nn.Module, height: int, width: int) -> int:
    """Bytes needed to encode or decode a ``height x width`` image with ``model``."""
    padded = _padded_pixels(model, height, width)
    floats = _peak_floats_per_pixel(model)
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    weights += int(GEMM_COPIES * sum(m.weight.numel() * 4 for m in model.modules() if isinstance(m, torch.nn.Linear)))
    return int(floats * padded * 4) + BYTES_PER_PIXEL * padded + weights + OVERHEAD_BYTES


def _meminfo_available() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _cgroup_available() -> int | None:
    """Room left under a cgroup v2 memory limit (containers, CI runners), if any."""
    root = Path("/sys/fs/cgroup")
    try:
        limit = (root / "memory.max").read_text().strip()
        if limit == "max":
            return None
        return int(limit) - int((root / "memory.current").read_text())
    except (OSError, ValueError):
        return None


def available_bytes(device: str) -> int | None:
    """Memory this process can still take on ``device``; None when unknown."""
    if device == "cuda":
        return torch.cuda.mem_get_info()[0]
    known = [b for b in (_meminfo_available(), _cgroup_available()) if b is not None]
    return min(known) if known else None


def peak_rss_bytes() -> float:
    """This process's peak resident set size in bytes; NaN where unknown (Windows)."""
    try:
        import resource
    except ImportError:  # pragma: no cover - Windows
        return math.nan
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return float(peak if sys.platform == "darwin" else peak * 1024)  # bytes on macOS, KiB elsewhere


def _resident_bytes() -> int:
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def additional_bytes(model: torch.nn.Module, height: int, width: int, device: str) -> int:
    """Bytes the image will still take on ``device``: its own share of the estimate,
    plus on the CPU whatever part of the fixed share this process has not taken yet."""
    fixed = estimate_peak_bytes(model, 0, 0)
    per_image = estimate_peak_bytes(model, height, width) - fixed
    if device == "cuda":
        return per_image
    return per_image + max(0, fixed - _resident_bytes())


def _size(n: int) -> str:
    return f"{n / 1e9:.1f} GB" if n >= 1e9 else f"{n / 1e6:.0f} MB"


def check_fits(model: torch.nn.Module, height: int, width: int, device: str) -> None:
    """Raise InputError when the image clearly will not fit in the memory left; when it
    fits, size the process's reused heap for it (``runtime.fit_allocator``)."""
    need, have = additional_bytes(model, height, width, device), available_bytes(device)
    if have is not None and need > have:
        where = "GPU memory" if device == "cuda" else "memory"
        raise InputError(
            f"a {width}x{height} image needs about {_size(need)} more {where} with these weights, "
            f"and {_size(have)} is available: use a smaller image or a machine with more {where}"
        )
    if device != "cuda":
        fit_allocator(map_bytes(model, height, width))
