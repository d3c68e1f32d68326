"""Which weights exist, where they are, and how a name or path becomes a model.

Sources, in order of preference for a given quality: weights the user imported
into the weights directory (``$LALIC_WEIGHTS``, default ``~/.cache/lalic/weights``),
then the weights bundled inside the package. ``weights.toml`` lists
both the official checkpoints (which must be imported) and the bundled ones.
"""

from __future__ import annotations

import hashlib
import os
import tomllib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import LalicError, QualityError
from ..families import CONFIGS, DEFAULT_FAMILY, tool_description
from ..fileio import atomic_write
from ..resources import cache_home, data_dir

if TYPE_CHECKING:
    import torch

# torch and the model code (.checkpoint) are imported inside the functions that load or
# save weights: listing the catalogue (`lalic weights list`) must not pay for them.

HASH_BYTES = 8


class WeightsError(LalicError):
    """Weights that are missing, unreadable or do not match; the message says what to do."""


@dataclass
class WeightsEntry:
    name: str
    kind: str  # "official", "bundled", "imported" or "file"
    config: str
    quality: float | None = None  # None for variable-rate weights
    qualities: tuple[float, float] = (1.0, 6.0)
    lmbda: float | None = None
    metric: str = "mse"
    file: str = ""
    source: str = ""
    sha256: str = ""
    path: Path | None = None
    family: str = DEFAULT_FAMILY  # its config's family (families.CONFIGS)

    @property
    def variable_rate(self) -> bool:
        return self.quality is None

    @property
    def available(self) -> bool:
        return self.path is not None and self.path.is_file()

    def covers(self, quality: float) -> bool:
        if self.variable_rate:
            return self.qualities[0] <= quality <= self.qualities[1]
        return float(self.quality) == float(quality)


def weights_dir() -> Path:
    """Where imported weights live: ``$LALIC_WEIGHTS`` or the user cache."""
    env = os.environ.get("LALIC_WEIGHTS")
    if env:
        return Path(env).expanduser()
    return cache_home() / "weights"


def _toml_entries() -> list[WeightsEntry]:
    with open(data_dir() / "weights.toml", "rb") as f:
        table = tomllib.load(f)
    entries = []
    for row in table.get("weights", []):
        e = WeightsEntry(
            name=row["name"],
            kind=row["kind"],
            config=row["config"],
            quality=row.get("quality"),
            qualities=tuple(row.get("qualities", (1.0, 6.0))),
            lmbda=row.get("lambda"),
            metric=row.get("metric", "mse"),
            file=row.get("file", ""),
            source=row.get("source", ""),
            sha256=row.get("sha256", ""),
            family=row.get("family", DEFAULT_FAMILY),
        )
        if e.kind == "bundled":
            e.path = data_dir() / "weights" / e.file
        else:
            e.path = weights_dir() / f"{e.name}.safetensors"
            e.config = weights_metadata(e.path).get("config", e.config)
        entries.append(e)
    return entries


def weights_metadata(path: Path) -> dict[str, str]:
    """The metadata of a safetensors file; empty if it is missing or unreadable."""
    from safetensors import safe_open

    if not path.is_file():
        return {}
    try:
        with safe_open(str(path), "pt") as f:
            return f.metadata() or {}
    except Exception:  # a foreign or damaged file is listed, and refused when loaded
        return {}


def _imported_entries(known: set[str]) -> list[WeightsEntry]:
    entries = []
    folder = weights_dir()
    for path in sorted(folder.glob("*.safetensors")) if folder.is_dir() else []:
        if path.stem in known:
            continue
        meta = weights_metadata(path)
        q = meta.get("quality")
        entries.append(
            WeightsEntry(
                name=path.stem, kind="imported", config=meta.get("config", "?"),
                quality=float(q) if q not in (None, "", "variable") else None,
                file=path.name, sha256=meta.get("sha256", ""), path=path,
                family=meta.get("family", DEFAULT_FAMILY),
            )
        )
    return entries


def catalogue() -> list[WeightsEntry]:
    """Every weights entry lalic knows: from weights.toml and from the weights directory."""
    entries = _toml_entries()
    return entries + _imported_entries({e.name for e in entries})


def file_entry(path: Path, quality: float | None) -> WeightsEntry:
    from .checkpoint import detect_config, load_checkpoint_file

    sd = load_checkpoint_file(path)
    config = detect_config(sd)
    return WeightsEntry(
        name=path.stem, kind="file", config=config, quality=quality, path=path, family=CONFIGS[config].family,
    )


def resolve(spec: str | None, quality: float, family: str = DEFAULT_FAMILY) -> WeightsEntry:
    """The weights of a model family to encode at ``quality``: by entry name, path, or default."""
    if spec and (os.sep in spec or spec.endswith((".pth", ".pt", ".safetensors"))):
        path = Path(spec).expanduser()
        if not path.is_file():
            raise WeightsError(f"weights file not found: {spec}")
        entry = file_entry(path, quality)
        if entry.family != family:
            hint = tool_description(entry.family) or f"use --codec {entry.family}"
            raise WeightsError(f"{spec} holds {entry.family} weights, not {family} ({hint})")
        return entry
    entries = [e for e in catalogue() if e.family == family]
    if spec:
        candidates = [e for e in entries if e.name == spec or e.name.rsplit("-q", 1)[0] == spec]
        if not candidates:
            names = ", ".join(sorted({e.name.rsplit('-q', 1)[0] for e in entries}))
            raise WeightsError(f"unknown weights {spec!r} (known: {names}; or give a file path)")
    else:
        # Weights the user imported (e.g. the official ones) win for their quality;
        # the bundled weights cover everything else.
        candidates = sorted(entries, key=lambda e: e.kind == "bundled")
    for e in candidates:
        if e.covers(quality) and e.available:
            return e
    if any(e.variable_rate for e in candidates) or float(quality).is_integer():
        wanted = [e for e in candidates if e.covers(quality)]
        if wanted:
            e = wanted[0]
            how = (
                f"download {e.file} ({e.source}) and run: lalic weights import {e.file} -q {e.quality:g}"
                if e.kind == "official" else f"reinstall lalic: {e.path} is missing"
            )
            raise WeightsError(f"no weights for quality {quality:g}: {how}")
    ranges = ", ".join(f"{e.name}: {e.qualities[0]:g} .. {e.qualities[1]:g}" for e in candidates if e.variable_rate)
    raise QualityError(
        f"no {family} weights cover quality {quality:g}"
        + (f" ({ranges})" if ranges else "")
        + ("" if float(quality).is_integer() else " (fractional qualities need variable-rate weights)")
    )


def find_for_decoding(name: str, spec: str | None) -> WeightsEntry:
    """The weights a file names; ``spec`` (a path or name) overrides the lookup."""
    if spec:
        return _find_spec(spec)
    for e in catalogue():
        if e.name == name and e.available:
            return e
    raise WeightsError(
        f"this file needs weights {name!r}, which are not installed (see `lalic weights list`; "
        "or pass --weights PATH)"
    )


def _find_spec(spec: str) -> WeightsEntry:
    path = Path(spec).expanduser()
    if path.is_file():
        return file_entry(path, None)
    for e in catalogue():
        if e.name == spec and e.available:
            return e
    raise WeightsError(f"weights not found: {spec}")


@lru_cache(maxsize=4)
def _load_cached(path: str, mtime: float, device: str, config: str | None):
    from ..portable.copies import note_fingerprint
    from .checkpoint import build_model, fingerprint, load_checkpoint_file

    sd = load_checkpoint_file(path)
    model = build_model(sd, config)
    fp = fingerprint(model.state_dict())
    note_fingerprint(model.to(device), fp)  # valid until the weights change
    return model, fp[: 2 * HASH_BYTES]


def load_model(entry: WeightsEntry, device: str = "cpu"):
    """``(model, short_hash)`` for an entry; models are cached per process."""
    from .checkpoint import CheckpointError

    if not entry.available:
        raise WeightsError(f"weights {entry.name!r} are not installed (expected at {entry.path})")
    verified = bool(entry.sha256) and entry.kind == "bundled"
    if verified and file_sha256(entry.path) != entry.sha256:
        raise WeightsError(f"{entry.path} is damaged (sha256 differs from weights.toml); reinstall lalic")
    # the config of weights whose sha256 weights.toml vouches for needs no detection
    # (which builds a model of each candidate config to compare every shape)
    try:
        return _load_cached(str(entry.path), entry.path.stat().st_mtime, device, entry.config if verified else None)
    except CheckpointError as e:
        raise WeightsError(f"{entry.path}: {e}") from None


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def save_weights(sd: dict[str, torch.Tensor], dest: Path, metadata: dict[str, str], dtype=None) -> None:
    """Write the canonical tensors as safetensors, atomically.

    With ``dtype``, floating tensors are cast to it, except a tensor the cast would send to
    inf, or whose flush of a nonzero value to 0 costs more than the cast's own rounding at
    the tensor's scale (the 1e-9 likelihood bound in fp16): that one stays as it is. A
    weight of 1e-8 beside weights of 0.1 flushes harmlessly and keeps the tensor fp16.
    """
    import torch
    from safetensors.torch import save_file

    from .checkpoint import canonical

    def cast(v: torch.Tensor) -> torch.Tensor:
        if dtype is None or not v.is_floating_point():
            return v
        c = v.to(dtype)
        scale = float(v.abs().max()) if v.numel() else 0.0
        tol = scale * torch.finfo(dtype).eps
        flushed = (c == 0) & (v.abs() > tol)
        lost = flushed | (torch.isinf(c) & torch.isfinite(v))
        return v if bool(lost.any()) else c

    tensors = {k: cast(v).detach().cpu().contiguous() for k, v in canonical(sd).items()}
    dest.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(dest, lambda p: save_file(tensors, str(p), metadata=metadata), force=True)


def import_checkpoint(src: Path, quality: float, name: str | None = None, force: bool = False) -> WeightsEntry:
    """Verify an official-layout checkpoint, fold OmniShift, store a compact copy."""
    from .checkpoint import build_model, detect_config, fingerprint, load_checkpoint_file

    sd = load_checkpoint_file(src)
    config = detect_config(sd)
    model = build_model(sd, config)
    name = name or f"lalic-mse-q{quality:g}"
    dest = weights_dir() / f"{name}.safetensors"
    if dest.exists() and not force:
        raise WeightsError(f"{dest} exists (use --force to replace it)")
    state = model.state_dict()
    save_weights(
        state, dest,
        {
            "config": config, "quality": f"{quality:g}", "source": src.name,
            "source_sha256": file_sha256(src), "fingerprint": fingerprint(state),
        },
    )
    entry = WeightsEntry(name=name, kind="imported", config=config, quality=quality, path=dest,
                         sha256=file_sha256(dest), file=dest.name)
    return entry
