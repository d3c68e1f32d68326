"""The training objectives, one function per recipe: each takes the model's ``out`` dict
and the batch and returns ``{"loss": ..., metrics...}``. The LPIPS-style distance that
``mrt_loss`` may add is ``perceptual.Perceptual``."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .perceptual import Perceptual


def _mse(x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Per image."""
    return F.mse_loss(x_hat, x, reduction="none").reshape(x.shape[0], -1).mean(1)


def _psnr(mse: torch.Tensor) -> torch.Tensor:
    return 10 * torch.log10(1.0 / mse.detach().clamp_min(1e-10)).mean()


def _bpp(likelihoods: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Per image, from MRT's per-bit likelihoods."""
    n, _, h, w = x.shape
    return (-torch.log2(likelihoods)).reshape(n, -1).sum(1) / (h * w)


def rd_loss(out: dict, x: torch.Tensor, lmbda: torch.Tensor) -> dict:
    """``lambda * 255^2 * MSE + bpp`` per image, averaged; lambda may differ per image."""
    n, _, h, w = x.shape
    bits = sum(
        (-torch.log2(l)).reshape(n, -1).sum(1) for l in out["likelihoods"].values()
    )
    bpp = bits / (h * w)
    mse = _mse(out["x_hat"], x)
    loss = (lmbda * 255**2 * mse + bpp).mean()
    return {"loss": loss, "bpp": bpp.mean(), "mse": mse.mean(), "psnr": _psnr(mse)}


def mrt_loss(out: dict, x: torch.Tensor, ms_ssim_weight: float = 5.0,
             perceptual: Perceptual | None = None, perceptual_weight: float = 1.0) -> dict:
    """``0.01 * 255^2 * MSE + w * (1 - MS-SSIM) + bpp + 0.1 * LFQ penalty``, plus
    ``perceptual_weight`` times the perceptual distance when one is given.

    At these rates the token budget bounds the rate, so distortion leads; the bpp
    term trains the context model (its only gradient) and makes codes predictable."""
    from pytorch_msssim import ms_ssim

    bpp = _bpp(out["likelihoods"], x)
    mse = _mse(out["x_hat"], x)
    similarity = ms_ssim(out["x_hat"].clamp(0, 1), x, data_range=1.0, size_average=False)
    loss = (0.01 * 255**2 * mse + ms_ssim_weight * (1 - similarity) + bpp).mean() + 0.1 * out["lfq_loss"]
    metrics = {"bpp": bpp.mean(), "mse": mse.mean(), "psnr": _psnr(mse), "ms_ssim": similarity.mean()}
    if perceptual is not None:
        distance = perceptual.to(x.device)(out["x_hat"], x).mean()
        loss = loss + perceptual_weight * distance
        metrics["lpips"] = distance
    return {"loss": loss} | metrics


def tokenizer_loss(out: dict, x: torch.Tensor, codes: int) -> dict:
    """``0.01 * 255^2 * MSE`` + the quantiser's codebook and commitment terms.

    ``bpp`` is the indices' cost before entropy coding (log2(codes) per 16x16 patch)."""
    mse = _mse(out["x_hat"], x)
    loss = 0.01 * 255**2 * mse.mean() + out["vq_loss"]
    return {"loss": loss, "bpp": x.new_tensor(math.log2(codes) / 256), "mse": mse.mean(), "psnr": _psnr(mse),
            "codes": x.new_tensor(float(out["indices"].unique().numel()))}


def align_loss(out: dict, x: torch.Tensor) -> dict:
    """Cross-entropy of the tokenizer's codes + bpp + 0.1 * LFQ penalty (stage 1).

    ``acc``: the share of patches whose code is predicted; ``psnr`` (eval mode only)
    is the generator's output, where stage 2 starts."""
    bpp = _bpp(out["likelihoods"], x)
    ce = F.cross_entropy(out["logits"], out["targets"])
    metrics = {"loss": ce + bpp.mean() + 0.1 * out["lfq_loss"], "ce": ce, "bpp": bpp.mean(),
               "acc": (out["logits"].argmax(1) == out["targets"]).float().mean()}
    if "x_hat" in out:
        metrics["psnr"] = _psnr(_mse(out["x_hat"], x))
    return metrics
