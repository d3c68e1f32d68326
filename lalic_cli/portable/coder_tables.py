"""CompressAI's coder tables (``GaussianConditional.update``,
``EntropyBottleneck.update``) computed by portable code.

CompressAI builds its CDF tables with float ``erfc``, ``softplus`` and ``tanh``, whose
last bits differ between machines; here the probabilities come from
``lalic_cli.portable.ops`` and only then go through CompressAI's integer quantiser, so
the tables, hence the CDFs, are the same on every machine.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from . import ops

__all__ = ["portable_bottleneck_tables", "portable_gaussian_tables", "portable_scale_table"]

# CompressAI's default scale table, exp(linspace(ln 0.11, ln 256, 64)), from literals
_LOG_SCALE_MIN, _LOG_SCALE_MAX, _SCALE_LEVELS = -2.2072749131897207, 5.545177444479562, 64
_QUANTILE_1E9 = 6.1094102048693975  # -Phi^-1(1e-9 / 2): CompressAI's tail mass 1e-9
_MINUS_SQRT_HALF = -0.7071067811865476


def portable_scale_table() -> torch.Tensor:
    step = (_LOG_SCALE_MAX - _LOG_SCALE_MIN) / (_SCALE_LEVELS - 1)
    logs = _LOG_SCALE_MIN + torch.arange(_SCALE_LEVELS, dtype=torch.float64) * step
    return ops.exp(logs).float()


def portable_gaussian_tables(gc: nn.Module) -> tuple[torch.Tensor, ...]:
    """``GaussianConditional.update``'s scale table, offsets, CDFs and CDF lengths, with
    the scale table and the pmf from portable code. They depend only on constants (the
    scale table, the tail mass, the coder precision)."""
    table = portable_scale_table()
    centre = torch.ceil(table.double() * _QUANTILE_1E9).int()
    length = 2 * centre + 1
    width = int(length.max())
    samples = (torch.arange(width).int() - centre[:, None]).abs().double()
    scales = table.double()[:, None]

    def cumulative(x: torch.Tensor) -> torch.Tensor:
        return 0.5 * ops.erfc(_MINUS_SQRT_HALF * x)

    upper = cumulative((0.5 - samples) / scales)
    lower = cumulative((-0.5 - samples) / scales)
    pmf = (upper - lower).float()
    tail = (2.0 * lower[:, :1]).float()
    return table, -centre, gc._pmf_to_cdf(pmf, tail, length, width), length + 2


def _logits_cumulative(eb: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """CompressAI's factorized density, each matrix product written out in a fixed order."""
    logits = x.double()  # C x 1 x N
    for i in range(len(eb.filters) + 1):
        m = ops.softplus(eb.matrices[i].detach().double())  # C x out x in
        out = m[:, :, :1] * logits[:, None, 0, :]
        for j in range(1, m.shape[2]):
            out = out + m[:, :, j: j + 1] * logits[:, None, j, :]
        logits = out + eb.biases[i].detach().double()
        if i < len(eb.filters):
            logits = logits + ops.tanh(eb.factors[i].detach().double()) * ops.tanh(logits)
    return logits


def portable_bottleneck_tables(eb: nn.Module) -> tuple[torch.Tensor, ...]:
    """``EntropyBottleneck.update``'s offsets, CDFs and CDF lengths, with the density
    evaluated by portable code."""
    medians = eb.quantiles[:, 0, 1].detach()
    minima = torch.ceil(medians - eb.quantiles[:, 0, 0].detach()).int().clamp(min=0)
    maxima = torch.ceil(eb.quantiles[:, 0, 2].detach() - medians).int().clamp(min=0)
    start = medians - minima
    length = maxima + minima + 1
    width = int(length.max())
    samples = torch.arange(width)[None, :] + start[:, None, None]  # C x 1 x N (float32, as CompressAI)
    lower = _logits_cumulative(eb, samples - 0.5)
    upper = _logits_cumulative(eb, samples + 0.5)
    pmf = (ops.sigmoid(upper) - ops.sigmoid(lower))[:, 0, :].float()
    tail = (ops.sigmoid(lower[:, 0, :1]) + ops.sigmoid(-upper[:, 0, -1:])).float()
    return -minima, eb._pmf_to_cdf(pmf, tail, length, width), length + 2
