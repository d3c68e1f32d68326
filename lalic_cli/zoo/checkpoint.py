"""Reading checkpoints in every form the authors' release and CompressAI produce.

The canonical form is a flat ``{key: tensor}`` dict in the official layout with
the derived entries (folded OmniShift kernels, checkerboard masks, entropy-coder
tables, the top-level ``h_a``/``h_s`` aliases) removed: they are recomputed from
the model, never trusted from a file.
"""

from __future__ import annotations

import hashlib
import re
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Mapping

import torch
import torch.nn as nn

from ..errors import LalicError
from ..families import CONFIGS, FAMILIES, Config

_OLD_EB = re.compile(r"entropy_bottleneck\._(matrix|bias|factor)(\d+)$")
_OLD_EB_NEW = {"matrix": "matrices", "bias": "biases", "factor": "factors"}
_CODER_TABLES = ("._quantized_cdf", "._offset", "._cdf_length", ".scale_table")
_DERIVED_SUFFIXES = (".conv5x5_reparam.weight", ".context_prediction.mask") + _CODER_TABLES
_ALIASES = ("h_a.", "h_s.")


class CheckpointError(LalicError):
    """A checkpoint that cannot be read or does not fit a registered configuration."""


def unwrap(obj: object) -> dict[str, torch.Tensor]:
    """Flat state dict from a bare dict, ``{"state_dict": ...}`` or ``{"model_state_dict": ...}``."""
    for key in ("state_dict", "model_state_dict"):
        if isinstance(obj, Mapping) and isinstance(obj.get(key), Mapping):
            obj = obj[key]
            break
    if not isinstance(obj, Mapping) or not obj:
        raise CheckpointError("not a model checkpoint (expected a state dict)")
    sd = {}
    for k, v in obj.items():
        if not isinstance(v, torch.Tensor):
            raise CheckpointError(f"not a model checkpoint (entry {k!r} is not a tensor)")
        if k.startswith("module."):
            k = k[len("module."):]
        m = _OLD_EB.search(k)
        if m:
            k = k[: m.start()] + f"entropy_bottleneck.{_OLD_EB_NEW[m.group(1)]}.{m.group(2)}"
        sd[k] = v
    return sd


def canonical(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop derived entries; what remains fully determines the model."""
    return {
        k: v
        for k, v in sd.items()
        if not k.endswith(_DERIVED_SUFFIXES) and not k.startswith(_ALIASES)
    }


def num_rates(sd: Mapping[str, torch.Tensor]) -> int:
    """Rate levels of a variable-rate (gain unit) checkpoint; 0 for fixed-rate ones."""
    return int(sd["gain"].shape[0]) if "gain" in sd else 0


@contextmanager
def _without_random_init():
    """Build layers without their random initialisation (a third of the load time of
    the full model), for a model whose every tensor is then overwritten."""
    layers = (nn.Linear, nn.modules.conv._ConvNd)
    saved = [layer.reset_parameters for layer in layers]
    for layer in layers:
        layer.reset_parameters = lambda self: None
    try:
        yield
    finally:
        for layer, reset in zip(layers, saved):
            layer.reset_parameters = reset


@lru_cache(maxsize=None)
def _expected_shapes(config: Config, rates: int = 0) -> dict[str, tuple[int, ...]]:
    with _without_random_init():
        model = config.build(rates)
    return {k: tuple(v.shape) for k, v in canonical(model.state_dict()).items()}


def _plausible(config: Config, shapes: Mapping[str, tuple[int, ...]]) -> bool:
    """A cheap first test (the config's probe: its first layer) before building the config's
    model to compare every shape."""
    key, width = config.probe()
    return shapes.get(key, (None,))[0] == width


def detect_config(sd: Mapping[str, torch.Tensor]) -> str:
    """Name of the registered configuration (any family) whose layout the checkpoint has exactly."""
    shapes = {k: tuple(v.shape) for k, v in canonical(sd).items()}
    for name, config in CONFIGS.items():
        if _plausible(config, shapes) and _expected_shapes(config, num_rates(sd)) == shapes:
            return name
    full = _expected_shapes(CONFIGS["full"])
    missing = sorted(set(full) - set(shapes))
    extra = sorted(set(shapes) - set(full))
    wrong = sorted(k for k in set(full) & set(shapes) if full[k] != shapes[k])
    detail = "; ".join(
        f"{label}: {len(keys)} (e.g. {keys[0]})"
        for label, keys in (("missing keys", missing), ("unexpected keys", extra), ("wrong shapes", wrong))
        if keys
    )
    families = " or ".join(f.label for f in FAMILIES.values())
    raise CheckpointError(f"checkpoint does not match any {families} configuration ({detail or 'no keys'})")


def fingerprint(sd: Mapping[str, torch.Tensor]) -> str:
    """sha256 over the canonical tensors (names, dtypes, shapes, values), hex."""
    h = hashlib.sha256()
    for k in sorted(canonical(sd)):
        t = sd[k].detach().to("cpu").contiguous()
        h.update(f"{k}:{t.dtype}:{tuple(t.shape)};".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")  # 0-dim too
    return h.hexdigest()


def build_model(sd: Mapping[str, torch.Tensor], config: str | None = None) -> torch.nn.Module:
    """A model in eval mode with ``sd`` loaded and OmniShift folded; its float coder
    tables are built on first use (``LALIC.float_tables``)."""
    name = config or detect_config(sd)
    weights = canonical(sd)
    if not CONFIGS[name].official_layout:
        return _build_other(weights, name)

    def given(key: str) -> torch.Tensor | None:
        if key in weights:
            return weights[key]
        if key.startswith(_ALIASES):
            return weights.get(f"latent_codec.hyper.{key}")
        return None

    with _without_random_init():
        model = CONFIGS[name].build(num_rates(sd))
    # Layer parameters skipped their initialisation (buffers are set in the constructors,
    # folded OmniShift kernels are recomputed on load), so each must come from the file.
    missing = [k for k, _ in model.named_parameters()
               if given(k) is None and not k.endswith("conv5x5_reparam.weight")]
    if missing:
        raise CheckpointError(f"checkpoint lacks {len(missing)} parameters of config {name} (e.g. {missing[0]})")
    full = model.state_dict()
    for k in full:
        # a file's coder tables are derived data, rebuilt on first use: the model keeps its
        # own empty ones, so the buffers need no resizing (CompressAI's load_state_dict
        # scans every key for every module to resize them: 0.1 s for the small config)
        if not k.endswith(_CODER_TABLES) and (t := given(k)) is not None:
            full[k] = t.to(full[k].dtype)
    nn.Module.load_state_dict(model, full, assign=True)  # the tensors themselves, not copies
    model.eval()
    model.config_name = name
    return model


def _build_other(weights: Mapping[str, torch.Tensor], name: str) -> torch.nn.Module:
    """Models without the official layout's aliases and coder tables: every canonical tensor from the file."""
    with _without_random_init():
        model = CONFIGS[name].build()
    expected = canonical(model.state_dict())
    missing = sorted(set(expected) - set(weights))
    if missing:
        raise CheckpointError(f"checkpoint lacks {len(missing)} tensors of config {name} (e.g. {missing[0]})")
    full = model.state_dict()
    for k in expected:
        full[k] = weights[k].to(full[k].dtype)
    model.load_state_dict(full)
    model.eval()
    model.config_name = name
    return model


def load_checkpoint_file(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a ``.pth``/``.pt`` (torch.save) or ``.safetensors`` file into a flat state dict."""
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return unwrap(load_file(str(path)))
        except (OSError, ValueError, RuntimeError) as e:
            raise CheckpointError(f"cannot read {path}: {e}") from None
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for a bad file
        raise CheckpointError(f"cannot read {path} as a PyTorch checkpoint ({type(e).__name__})") from None
    return unwrap(obj)
