"""Tensors derived from a weights file (the portable coder tables), cached on disk so that
each call need not rebuild them.

An entry is one safetensors file in ``$LALIC_CACHE/tables`` (default
``$XDG_CACHE_HOME/lalic/tables``, else ``~/.cache/lalic/tables``) named by its key, a
hash of the weights' fingerprint and of a version of the code that derives the
tensors, so changing either makes a new entry. The file records that key and a
sha256 of its tensors; one whose key or checksum does not match, or that cannot be
read, is rebuilt and rewritten (atomically), never used. A cache that cannot be
written only costs the rebuild.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from ..fileio import atomic_write

if TYPE_CHECKING:
    import torch

__all__ = ["cached_tensors", "tables_dir"]


def tables_dir() -> Path:
    """Beside the kernel builds, in lalic's user cache folder."""
    from ..kernels import cache_dir

    return cache_dir().parent / "tables"


def _checksum(tensors: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()


def _read(path: Path, key: str) -> dict[str, torch.Tensor] | None:
    from safetensors import safe_open

    try:
        with safe_open(str(path), "pt") as f:
            meta = f.metadata() or {}
            if meta.get("key") != key:
                return None
            tensors = {name: f.get_tensor(name) for name in f.keys()}
    except Exception:  # missing, truncated or foreign: rebuilt
        return None
    return tensors if meta.get("sha256") == _checksum(tensors) else None


def cached_tensors(fingerprint: str, version: str, build: Callable[[], dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """``build()``'s tensors for the weights with this fingerprint, from the cache when a
    valid entry made by the same ``version`` of the deriving code is there."""
    key = hashlib.sha256(f"{fingerprint}\0{version}".encode()).hexdigest()[:32]
    path = tables_dir() / f"{key}.safetensors"
    tensors = _read(path, key)
    if tensors is not None:
        return tensors
    tensors = {name: t.contiguous() for name, t in build().items()}
    from safetensors.torch import save_file

    meta = {"key": key, "sha256": _checksum(tensors)}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, lambda p: save_file(tensors, str(p), metadata=meta), force=True)
    except OSError:
        pass
    return tensors
