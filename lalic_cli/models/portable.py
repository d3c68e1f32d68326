"""The portable entropy path: a CPU copy of a model's latent codec whose every
decision-making layer is exact (``lalic_cli.layers.exact``), with coder tables built
by exact code.

Built once per loaded model (post-training conversion; nothing to store). ``h_a``
runs only at the encoder and stays in float; ``h_s``, the channel contexts, the
checkerboard contexts and the parameter layers, which decide the CDFs and the means,
become exact. CompressAI builds its CDF tables with float ``erfc``, ``softplus`` and
``tanh``, whose last bits differ between machines; here the probabilities come from
``ops.exact`` and only then go through CompressAI's integer quantiser. See
``docs/portable.md``.
"""

from __future__ import annotations

import copy
import weakref

import torch
import torch.nn as nn

from ..layers.exact import to_exact
from ..ops import exact

__all__ = ["portable_latent_codec"]

_cache: "weakref.WeakKeyDictionary[nn.Module, nn.Module]" = weakref.WeakKeyDictionary()


def portable_latent_codec(model: nn.Module) -> nn.Module:
    """The model's ``latent_codec`` on the CPU with the entropy path made exact (cached)."""
    lc = _cache.get(model)
    if lc is None:
        lc = copy.deepcopy(model.latent_codec).cpu().eval()
        hyper = lc.latent_codec["hyper"]
        hyper.h_s = to_exact(hyper.h_s)
        groups = lc.latent_codec["y"]
        for name in list(groups.channel_context):
            groups.channel_context[name] = to_exact(groups.channel_context[name])
        for codec in groups.latent_codec.values():
            codec.context_prediction = to_exact(codec.context_prediction)
            codec.entropy_parameters = to_exact(codec.entropy_parameters)
            exact_gaussian_tables(codec.latent_codec["y"].gaussian_conditional)
        exact_bottleneck_tables(hyper.entropy_bottleneck)
        _cache[model] = lc
    return lc


# CompressAI's default scale table, exp(linspace(ln 0.11, ln 256, 64)), from literals
_LOG_SCALE_MIN, _LOG_SCALE_MAX, _SCALE_LEVELS = -2.2072749131897207, 5.545177444479562, 64
_QUANTILE_1E9 = 6.1094102048693975  # -Phi^-1(1e-9 / 2): CompressAI's tail mass 1e-9
_MINUS_SQRT_HALF = -0.7071067811865476


def exact_scale_table() -> torch.Tensor:
    step = (_LOG_SCALE_MAX - _LOG_SCALE_MIN) / (_SCALE_LEVELS - 1)
    logs = _LOG_SCALE_MIN + torch.arange(_SCALE_LEVELS, dtype=torch.float64) * step
    return exact.exp(logs).float()


_gaussian_tables: dict[int, tuple[torch.Tensor, ...]] = {}


def exact_gaussian_tables(gc: nn.Module) -> None:
    """``GaussianConditional.update`` with the scale table and the pmf from exact code.

    The tables depend only on constants (the scale table, the tail mass, the coder
    precision), so they are built once per process and shared: a model has one
    Gaussian per channel group."""
    if gc.tail_mass != 1e-9:
        raise ValueError(f"portable tables assume CompressAI's tail mass 1e-9, got {gc.tail_mass}")
    key = int(gc.entropy_coder_precision)
    if key not in _gaussian_tables:
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
        _gaussian_tables[key] = (table, gc._pmf_to_cdf(pmf, tail, length, width), -centre, length + 2)
    table, cdf, offset, cdf_length = _gaussian_tables[key]
    gc.scale_table = table
    gc._quantized_cdf = cdf
    gc._offset = offset
    gc._cdf_length = cdf_length


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


def exact_bottleneck_tables(eb: nn.Module) -> None:
    """``EntropyBottleneck.update`` with the density evaluated by exact code."""
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
    eb._offset = -minima
    eb._quantized_cdf = eb._pmf_to_cdf(pmf, tail, length, width)
    eb._cdf_length = length + 2
