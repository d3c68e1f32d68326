"""The portable copy of a model's latent codec: on the CPU, every decision-making layer
converted (``lalic_cli.portable.layers``), with coder tables built by portable code.

Built per loaded weights (post-training conversion) and kept in the cache of portable
copies (``lalic_cli.portable.copies``) until they are loaded again or trained. ``h_a``
runs only at the encoder and stays in float; ``h_s``, the channel contexts, the
checkerboard contexts and the parameter layers, which decide the CDFs and the means,
become portable. The coder tables come from portable code
(``lalic_cli.portable.coder_tables``) and are cached on disk per weights
(``lalic_cli.portable.table_cache``). See ``docs/portable.md``.
"""

from __future__ import annotations

import copy
import functools
import hashlib
from pathlib import Path

import torch
import torch.nn as nn

from . import coder_tables, ops
from .coder_tables import portable_bottleneck_tables, portable_gaussian_tables
from .copies import cached_copy, fingerprint_of
from .layers import ARITHMETIC, to_portable
from .table_cache import cached_tensors

__all__ = ["portable_latent_codec"]


def portable_latent_codec(model: nn.Module, arithmetic: int = ARITHMETIC) -> nn.Module:
    """The model's ``latent_codec`` on the CPU with the entropy path made portable in the
    given arithmetic (``lalic_cli.portable.layers``; cached for the model's current weights)."""
    return cached_copy(model, ("latent_codec", arithmetic), lambda: _build(model, arithmetic))


def _build(model: nn.Module, arithmetic: int) -> nn.Module:
    lc = _portable_copy(model.latent_codec, arithmetic)
    fingerprint = fingerprint_of(model)  # recorded by the weights loader, None once they change
    build = functools.partial(_coder_tables, lc)
    tables = build() if fingerprint is None else cached_tensors(fingerprint, _tables_version(), build)
    _set_coder_tables(lc, tables)
    return lc


def _portable_copy(latent_codec: nn.Module, arithmetic: int) -> nn.Module:
    """A CPU copy of the latent codec with the portable layers in place. Deepcopy's memo
    maps each float layer to its portable counterpart (and ``h_a``, if on the CPU, to
    itself), so the layers being replaced, most of the weights, are never copied."""
    hyper = latent_codec.latent_codec["hyper"]
    groups = latent_codec.latent_codec["y"]
    layers = [hyper.h_s, *groups.channel_context.values()]
    for codec in groups.latent_codec.values():
        layers += [codec.context_prediction, codec.entropy_parameters]
    memo = {id(layer): to_portable(layer, arithmetic) for layer in layers}
    if all(t.device.type == "cpu" for t in hyper.h_a.state_dict().values()):
        memo[id(hyper.h_a)] = hyper.h_a  # float, read only
    return copy.deepcopy(latent_codec, memo).cpu().eval()


def _gaussians(lc: nn.Module) -> list[nn.Module]:
    gcs = [codec.latent_codec["y"].gaussian_conditional for codec in lc.latent_codec["y"].latent_codec.values()]
    for gc in gcs:
        if gc.tail_mass != 1e-9:
            raise ValueError(f"portable tables assume CompressAI's tail mass 1e-9, got {gc.tail_mass}")
    return gcs


_TABLE_NAMES = ("_offset", "_quantized_cdf", "_cdf_length")


def _coder_tables(lc: nn.Module) -> dict[str, torch.Tensor]:
    """Every coder table of the portable codec, built by portable code."""
    tables = {}
    for gc in _gaussians(lc):  # one set per coder precision: every group has the same
        prefix = f"gaussian{int(gc.entropy_coder_precision)}."
        if prefix + "scale_table" not in tables:
            names = ("scale_table", *_TABLE_NAMES)
            tables.update({prefix + n: t for n, t in zip(names, portable_gaussian_tables(gc))})
    eb = lc.latent_codec["hyper"].entropy_bottleneck
    tables.update({f"bottleneck.{n}": t for n, t in zip(_TABLE_NAMES, portable_bottleneck_tables(eb))})
    return tables


def _set_coder_tables(lc: nn.Module, tables: dict[str, torch.Tensor]) -> None:
    for gc in _gaussians(lc):
        prefix = f"gaussian{int(gc.entropy_coder_precision)}."
        for name in ("scale_table", *_TABLE_NAMES):
            setattr(gc, name, tables[prefix + name])
    eb = lc.latent_codec["hyper"].entropy_bottleneck
    for name in _TABLE_NAMES:
        setattr(eb, name, tables["bottleneck." + name])


@functools.lru_cache(maxsize=None)
def _tables_version() -> str:
    """What the cached tables depend on besides the weights: the code that builds them
    (this file, the table code, the portable operators and their C++ kernels) and
    CompressAI's quantiser."""
    import compressai

    h = hashlib.sha256(f"{torch.__version__}\0{compressai.__version__}".encode())
    for path in (Path(__file__), Path(coder_tables.__file__), Path(ops.__file__)):
        h.update(path.read_bytes())
    from lalic_cli.kernels import sources

    for path in sources("exact"):
        h.update(path.read_bytes())
    return h.hexdigest()
