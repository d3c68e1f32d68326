"""The portable entropy path: a CPU copy of a model's latent codec whose every
decision-making layer is exact (``lalic_cli.layers.exact``), with coder tables built
by exact code.

Built once per loaded model (post-training conversion). ``h_a``
runs only at the encoder and stays in float; ``h_s``, the channel contexts, the
checkerboard contexts and the parameter layers, which decide the CDFs and the means,
become exact. CompressAI builds its CDF tables with float ``erfc``, ``softplus`` and
``tanh``, whose last bits differ between machines; here the probabilities come from
``ops.exact`` and only then go through CompressAI's integer quantiser. Those tables
are cached on disk per weights (``lalic_cli.derived``). See ``docs/portable.md``.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import weakref
from pathlib import Path

import torch
import torch.nn as nn

from ..derived import cached_tensors
from ..layers.exact import to_exact
from ..ops import exact

__all__ = ["portable_latent_codec"]

_cache: "weakref.WeakKeyDictionary[nn.Module, nn.Module]" = weakref.WeakKeyDictionary()


def portable_latent_codec(model: nn.Module) -> nn.Module:
    """The model's ``latent_codec`` on the CPU with the entropy path made exact (cached)."""
    lc = _cache.get(model)
    if lc is None:
        lc = _exact_copy(model.latent_codec)
        fingerprint = getattr(model, "fingerprint", None)  # set by the weights loader
        build = functools.partial(_coder_tables, lc)
        tables = build() if fingerprint is None else cached_tensors(fingerprint, _tables_version(), build)
        _set_coder_tables(lc, tables)
        _cache[model] = lc
    return lc


def _exact_copy(latent_codec: nn.Module) -> nn.Module:
    """A CPU copy of the latent codec with the exact layers in place. Deepcopy's memo maps
    each float layer to its exact counterpart (and ``h_a``, if on the CPU, to itself), so
    the layers being replaced, most of the weights, are never copied."""
    hyper = latent_codec.latent_codec["hyper"]
    groups = latent_codec.latent_codec["y"]
    layers = [hyper.h_s, *groups.channel_context.values()]
    for codec in groups.latent_codec.values():
        layers += [codec.context_prediction, codec.entropy_parameters]
    memo = {id(layer): to_exact(layer) for layer in layers}
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
    """Every coder table of the portable codec, built by exact code."""
    tables = {}
    for gc in _gaussians(lc):  # one set per coder precision: every group has the same
        prefix = f"gaussian{int(gc.entropy_coder_precision)}."
        if prefix + "scale_table" not in tables:
            names = ("scale_table", *_TABLE_NAMES)
            tables.update({prefix + n: t for n, t in zip(names, exact_gaussian_tables(gc))})
    eb = lc.latent_codec["hyper"].entropy_bottleneck
    tables.update({f"bottleneck.{n}": t for n, t in zip(_TABLE_NAMES, exact_bottleneck_tables(eb))})
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
    (this file, the exact operators and their C++ kernel) and CompressAI's quantiser."""
    import compressai

    h = hashlib.sha256(f"{torch.__version__}\0{compressai.__version__}".encode())
    for path in (Path(__file__), Path(exact.__file__)):
        h.update(path.read_bytes())
    from lalic_cli.kernels import sources

    for path in sources("exact"):
        h.update(path.read_bytes())
    return h.hexdigest()


# CompressAI's default scale table, exp(linspace(ln 0.11, ln 256, 64)), from literals
_LOG_SCALE_MIN, _LOG_SCALE_MAX, _SCALE_LEVELS = -2.2072749131897207, 5.545177444479562, 64
_QUANTILE_1E9 = 6.1094102048693975  # -Phi^-1(1e-9 / 2): CompressAI's tail mass 1e-9
_MINUS_SQRT_HALF = -0.7071067811865476


def exact_scale_table() -> torch.Tensor:
    step = (_LOG_SCALE_MAX - _LOG_SCALE_MIN) / (_SCALE_LEVELS - 1)
    logs = _LOG_SCALE_MIN + torch.arange(_SCALE_LEVELS, dtype=torch.float64) * step
    return exact.exp(logs).float()


def exact_gaussian_tables(gc: nn.Module) -> tuple[torch.Tensor, ...]:
    """``GaussianConditional.update``'s scale table, offsets, CDFs and CDF lengths, with
    the scale table and the pmf from exact code. They depend only on constants (the
    scale table, the tail mass, the coder precision)."""
    table = exact_scale_table()
    centre = torch.ceil(table.double() * _QUANTILE_1E9).int()
    length = 2 * centre + 1
    width = int(length.max())
    samples = (torch.arange(width).int() - centre[:, None]).abs().double()
    scales = table.double()[:, None]

    def cumulative(x: torch.Tensor) -> torch.Tensor:
        return 0.5 * exact.erfc(_MINUS_SQRT_HALF * x)

    upper = cumulative((0.5 - samples) / scales)
    lower = cumulative((-0.5 - samples) / scales)
    pmf = (upper - lower).float()
    tail = (2.0 * lower[:, :1]).float()
    return table, -centre, gc._pmf_to_cdf(pmf, tail, length, width), length + 2


def _logits_cumulative(eb: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """CompressAI's factorized density, each matrix product written out in a fixed order."""
    logits = x.double()  # C x 1 x N
    for i in range(len(eb.filters) + 1):
        m = exact.softplus(eb.matrices[i].detach().double())  # C x out x in
        out = m[:, :, :1] * logits[:, None, 0, :]
        for j in range(1, m.shape[2]):
            out = out + m[:, :, j: j + 1] * logits[:, None, j, :]
        logits = out + eb.biases[i].detach().double()
        if i < len(eb.filters):
            logits = logits + exact.tanh(eb.factors[i].detach().double()) * exact.tanh(logits)
    return logits


def exact_bottleneck_tables(eb: nn.Module) -> tuple[torch.Tensor, ...]:
    """``EntropyBottleneck.update``'s offsets, CDFs and CDF lengths, with the density
    evaluated by exact code."""
    medians = eb.quantiles[:, 0, 1].detach()
    minima = torch.ceil(medians - eb.quantiles[:, 0, 0].detach()).int().clamp(min=0)
    maxima = torch.ceil(eb.quantiles[:, 0, 2].detach() - medians).int().clamp(min=0)
    start = medians - minima
    length = maxima + minima + 1
    width = int(length.max())
    samples = torch.arange(width)[None, :] + start[:, None, None]  # C x 1 x N (float32, as CompressAI)
    lower = _logits_cumulative(eb, samples - 0.5)
    upper = _logits_cumulative(eb, samples + 0.5)
    pmf = (exact.sigmoid(upper) - exact.sigmoid(lower))[:, 0, :].float()
    tail = (exact.sigmoid(lower[:, 0, :1]) + exact.sigmoid(-upper[:, 0, -1:])).float()
    return -minima, eb._pmf_to_cdf(pmf, tail, length, width), length + 2
