"""Per-image refinement of the latents before coding: efforts above the default (``effort.py``).

The gained latent y and the hyper-latent z of the image are optimised for
R + λ·255²·MSE through the frozen g_s, h_s and entropy model, with rounding annealed
from soft to hard (SGA: Yang, Bamler & Mandt, NeurIPS 2020), keeping the best latents
scored with hard rounding. The decoder and the format do not change: the refined
latents are coded by the same latent codec (the portable one by default), only with
the given z instead of h_a(y).
"""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F

__all__ = ["rd_lambda", "refine", "compress_latents", "relaxed_latents", "sga_round", "check_refinement_fits"]

# SGA temperature: 0.5 -> 0.05 geometrically over TAU_STEPS, whatever the number of steps (a
# schedule squeezed into fewer steps anneals too fast: 3.8 % lower R+λD at 100 steps,
# against 4.9-5.7 % for this one, on two bsds500-test crops)
TAU_START, TAU_END, TAU_STEPS = 0.5, 0.05, 200
LEARNING_RATE = 1e-2
SCORE_EVERY = 5  # steps between scores with hard rounding (and at the last step)

OnStep = Callable[[int, int], None]


# Autograd keeps every activation of g_s and the entropy model for the backward pass:
# measured +0.9 GiB of peak RSS for a 481x321 image (512x384 padded) with the bundled
# small config. Scaled by g_s's maps per pixel (width x (blocks + 1) of each stage, at
# 1/64, 1/16, 1/4 of the pixels): 27 there, 182 bytes each; the full config has 145.
BYTES_PER_MAP_PIXEL = 182


def check_refinement_fits(model, padded_pixels: int, device: str) -> None:
    """Refuse up front an image whose refinement clearly will not fit in memory."""
    from .errors import InputError
    from .memory import _size, available_bytes

    stages: list[list[int]] = []  # [width, modules] per upsampling stage of g_s
    for m in model.g_s:
        if isinstance(m, torch.nn.ConvTranspose2d):
            stages.append([m.out_channels, 1])
        else:
            stages[-1][1] += 1
    maps = sum(w * n / 4 ** (len(stages) - i) for i, (w, n) in enumerate(stages[:-1], 1))
    need, have = int(BYTES_PER_MAP_PIXEL * maps * padded_pixels), available_bytes(device)
    if have is not None and need > have:
        raise InputError(f"refining this image's latents (effort above 7) needs about {_size(need)} of memory and "
                         f"{_size(have)} is available: use a lower effort or a smaller image")


def rd_lambda(model, quality: float, lmbda: float | None = None) -> float:
    """The λ the weights were trained for at ``quality``: the entry's (official weights),
    else the training ladder, interpolated geometrically between levels as the gains are."""
    if lmbda:
        return float(lmbda)
    from .models.rates import lambda_for

    return lambda_for(min(float(quality), model.max_quality))


def sga_round(u: torch.Tensor, tau: float | None, gen: torch.Generator | None = None) -> torch.Tensor:
    """Stochastic Gumbel annealing of ``round(u)``; ``tau=None`` is hard rounding.

    The two neighbouring integers get logits -atanh(distance)/tau, and a Gumbel-softmax
    sample at temperature tau mixes them, so u moves toward one integer as tau falls."""
    if tau is None:
        return torch.round(u)
    lo = torch.floor(u)
    r = (u - lo).clamp(1e-5, 1 - 1e-5)
    logits = torch.stack((-torch.atanh(r), -torch.atanh(1 - r)), dim=-1) / tau
    gumbel = -torch.log(-torch.log(torch.rand(logits.shape, generator=gen, device=u.device).clamp_min(1e-20)))
    w = torch.softmax((logits + gumbel) / tau, dim=-1)
    return lo + w[..., 1]


def _gaussian_bits(gc, y_t: torch.Tensor, scales: torch.Tensor, means: torch.Tensor) -> torch.Tensor:
    lik = gc._likelihood(y_t, scales, means)
    return -torch.log2(gc.likelihood_lower_bound(lik) if gc.use_likelihood_bound else lik).sum()


def _checkerboard(cb, y: torch.Tensor, side: torch.Tensor, q) -> tuple[torch.Tensor, torch.Tensor]:
    """One group through a ``CheckerboardLatentCodec`` as its compress does: anchors from
    the side parameters alone, then non-anchors with the anchors as context; one rounded
    sample per element feeds the rate, the context and the synthesis."""
    h, w = y.shape[-2:]
    ij = torch.arange(h, device=y.device)[:, None] + torch.arange(w, device=y.device)
    anchor = ((ij % 2 == 0) == (cb.anchor_parity == "even")).to(y.dtype)
    gcl = cb.latent_codec["y"]
    ctx = torch.zeros_like(side[:, :1]).expand(-1, cb.context_prediction.out_channels, -1, -1)
    scales_a, means_a = gcl._chunk(cb.entropy_parameters(torch.cat((ctx, side), 1)))
    y_a = (means_a + q(y - means_a)) * anchor
    scales_n, means_n = gcl._chunk(cb.entropy_parameters(torch.cat((cb.context_prediction(y_a), side), 1)))
    y_t = y_a + (means_n + q(y - means_n)) * (1 - anchor)
    scales = scales_a * anchor + scales_n * (1 - anchor)
    means = means_a * anchor + means_n * (1 - anchor)
    return y_t, _gaussian_bits(gcl.gaussian_conditional, y_t, scales, means)


def relaxed_latents(latent_codec, y: torch.Tensor, z: torch.Tensor, q) -> tuple[torch.Tensor, torch.Tensor]:
    """``(y_tilde, bits)`` of given y and z through a ``HyperpriorLatentCodec``, with the
    rounding ``q`` (applied around the bottleneck medians and the predicted means)."""
    hyper, groups = latent_codec.latent_codec["hyper"], latent_codec.latent_codec["y"]
    eb = hyper.entropy_bottleneck
    medians = eb._get_medians().reshape(1, -1, 1, 1)
    z_t = medians + q(z - medians)
    values = z_t.transpose(0, 1).reshape(z_t.shape[1], 1, -1)
    lik = eb._likelihood(values)[0]
    bits = -torch.log2(eb.likelihood_lower_bound(lik) if eb.use_likelihood_bound else lik).sum()
    side = hyper.h_s(z_t)
    parts: list[torch.Tensor] = []
    for k, y_k in enumerate(y.split(groups.groups, dim=1)):
        params = side if k == 0 else torch.cat((groups.channel_context[f"y{k}"](torch.cat(parts, 1)), side), 1)
        y_t, b = _checkerboard(groups.latent_codec[f"y{k}"], y_k, params, q)
        parts.append(y_t)
        bits = bits + b
    return torch.cat(parts, 1), bits


class _Objective:
    """R + λ·255²·MSE in bits per pixel of the image (the padding is neither paid nor scored)."""

    def __init__(self, model, x: torch.Tensor, quality: float, lmbda: float, pad: tuple[int, int, int, int]):
        self.model, self.lmbda = model, lmbda
        left, right, top, bottom = pad
        self.crop = (slice(top, x.shape[-2] - bottom), slice(left, x.shape[-1] - right))
        self.x = x[..., self.crop[0], self.crop[1]]
        self.pixels = self.x.shape[-2] * self.x.shape[-1]
        g = model.gains(quality)
        self.inv_gain = None if g is None else g[1]

    def __call__(self, y: torch.Tensor, z: torch.Tensor, q) -> tuple[torch.Tensor, torch.Tensor, float]:
        """``(loss, y_tilde, psnr)``."""
        y_t, bits = relaxed_latents(self.model.latent_codec, y, z, q)
        x_hat = self.model.synthesis(y_t if self.inv_gain is None else y_t * self.inv_gain).clamp(0, 1)
        mse = F.mse_loss(x_hat[..., self.crop[0], self.crop[1]], self.x)
        psnr = -10 * math.log10(max(float(mse.detach()), 1e-12))
        return bits / self.pixels + self.lmbda * 255**2 * mse, y_t, psnr


def refine(model, x: torch.Tensor, quality: float, lmbda: float, steps: int,
           pad: tuple[int, int, int, int] = (0, 0, 0, 0), on_step: OnStep | None = None,
           seed: int = 0) -> dict:
    """Refine the latents of the padded image ``x``; returns the best ones, already
    rounded (``y_hat`` around the float model's means, ``z_hat`` around the medians,
    so the coder picks the same symbols), with their scores ``loss`` and ``psnr`` and the
    first encoder's ``loss0``. Deterministic for a given machine and seed."""
    objective = _Objective(model, x, quality, lmbda, pad)
    with torch.no_grad():
        y0 = model.analysis(x)
        g = model.gains(quality)
        y0 = y0 if g is None else y0 * g[0]
        z0 = model.latent_codec.latent_codec["hyper"].h_a(y0)
    y, z = y0.clone().requires_grad_(True), z0.clone().requires_grad_(True)
    gen = torch.Generator(device=x.device).manual_seed(seed)
    opt = torch.optim.Adam([y, z], lr=LEARNING_RATE)
    best = None

    def score() -> None:
        nonlocal best
        with torch.no_grad():
            loss, _, psnr = objective(y, z, lambda u: sga_round(u, None))
        if best is None or float(loss) < best[0]:
            best = (float(loss), psnr, y.detach().clone(), z.detach().clone())

    score()
    loss0 = best[0]
    for i in range(steps):
        tau = TAU_START * (TAU_END / TAU_START) ** min(i / TAU_STEPS, 1.0)
        loss, _, _ = objective(y, z, lambda u: sga_round(u, tau, gen))
        y.grad, z.grad = torch.autograd.grad(loss, [y, z])  # no gradients for the frozen weights
        opt.step()
        if (i + 1) % SCORE_EVERY == 0 or i + 1 == steps:
            score()
        if on_step is not None:
            on_step(i + 1, steps)
    loss, psnr, y_best, z_best = best
    with torch.no_grad():
        y_hat, _ = relaxed_latents(model.latent_codec, y_best, z_best, lambda u: sga_round(u, None))
        medians = model.latent_codec.latent_codec["hyper"].entropy_bottleneck._get_medians().reshape(1, -1, 1, 1)
        z_hat = medians + torch.round(z_best - medians)
    return {"y_hat": y_hat, "z_hat": z_hat, "loss": loss, "psnr": psnr, "loss0": loss0}


def compress_latents(latent_codec, y: torch.Tensor, z: torch.Tensor) -> dict:
    """``HyperpriorLatentCodec.compress`` for a given z instead of h_a(y): the same strings,
    shapes and ``y_hat``, so the unchanged decoder reads them."""
    hyper = latent_codec.latent_codec["hyper"]
    shape = z.shape[-2:]
    z_strings = hyper.entropy_bottleneck.compress(z)
    params = hyper.h_s(hyper.entropy_bottleneck.decompress(z_strings, shape))
    y_out = latent_codec.latent_codec["y"].compress(y, params)
    return {"strings": [*y_out["strings"], z_strings], "shape": {"y": y_out["shape"], "hyper": shape},
            "y_hat": y_out["y_hat"]}
