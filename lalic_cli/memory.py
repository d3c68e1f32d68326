"""Peak-memory estimate, so that an image too large for the machine is refused up front
with a message instead of being killed by the out-of-memory killer half-way."""

from __future__ import annotations

import math
from pathlib import Path

import torch

from .errors import InputError

# At the peak of a first-stage (or last-stage) Bi-RWKV block, about four map-sized
# float32 tensors of the first stage's width live at once (the block's input, the
# BiWKV keys, values and output), plus the transposed conv around them: 5.5 maps.
# The image itself is held several times over (8-bit, float, padded, decoded):
# 64 bytes per pixel. Measured peaks at 3840x2160 (benchmarks/RESULTS.md): full
# config 4.66 GB encode / 5.49 GB decode (this estimate: 6.8 GB); bundled small
# config 3.00 / 2.87 GB (estimate: 3.6 GB).
MAPS_AT_PEAK = 5.5
BYTES_PER_PIXEL = 64
OVERHEAD_BYTES = 3 << 29  # 1.6 GB: the interpreter, torch (0.95 GB measured before any coding), the coder


def estimate_peak_bytes(model: torch.nn.Module, height: int, width: int) -> int:
    """Bytes needed to encode or decode a ``height x width`` image with ``model``."""
    multiple = getattr(model, "downsampling_factor", 64)
    padded = math.ceil(height / multiple) * multiple * math.ceil(width / multiple) * multiple
    width1 = model.g_a[0].out_channels
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    return int(MAPS_AT_PEAK * (padded // 4) * width1 * 4) + BYTES_PER_PIXEL * padded + weights + OVERHEAD_BYTES


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


def check_fits(model: torch.nn.Module, height: int, width: int, device: str) -> None:
    """Raise InputError when the image clearly will not fit in the memory left."""
    need, have = estimate_peak_bytes(model, height, width), available_bytes(device)
    if have is not None and need > have:
        where = "GPU memory" if device == "cuda" else "memory"
        raise InputError(
            f"a {width}x{height} image needs about {need / 1e9:.1f} GB of {where} with these weights, "
            f"and {have / 1e9:.1f} GB is available: use a smaller image or a machine with more {where}"
        )
