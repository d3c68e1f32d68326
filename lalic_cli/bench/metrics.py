"""Image quality on 8-bit RGB: PSNR (numpy, float64) and MS-SSIM (pytorch-msssim)."""

from __future__ import annotations

import math

import numpy as np
from PIL import Image

#: pytorch-msssim's default 5-scale MS-SSIM with an 11-tap window needs sides > (11 - 1) * 2**4
MS_SSIM_MIN_SIDE = 161


def to_rgb8(image: Image.Image | np.ndarray) -> np.ndarray:
    """An H x W x 3 uint8 array (PIL images of any mode are converted to RGB)."""
    if isinstance(image, Image.Image):
        if image.mode != "RGB":
            image = image.convert("RGB")
        return np.asarray(image, dtype=np.uint8)
    arr = np.asarray(image)
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"expected an H x W x 3 uint8 array, got {arr.dtype} {arr.shape}")
    return arr


def tensor_to_rgb8(x) -> np.ndarray:
    """A 1 x 3 x H x W float tensor in [0, 1] rounded to H x W x 3 uint8, as decoding does."""
    import torch

    return (x[0].detach().clamp(0, 1) * 255.0).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()


def ideal_bits(likelihoods) -> float:
    """Code length in bits (float64) of every likelihood tensor in a possibly nested dict or
    list: what an ideal entropy coder would spend, a little under real files."""
    if isinstance(likelihoods, dict):
        return sum(ideal_bits(v) for v in likelihoods.values())
    if isinstance(likelihoods, (list, tuple)):
        return sum(ideal_bits(v) for v in likelihoods)
    return float(-likelihoods.double().log2().sum())


def mse(a: np.ndarray, b: np.ndarray) -> float:
    if a.shape != b.shape:
        raise ValueError(f"images differ in size: {a.shape} and {b.shape}")
    d = a.astype(np.float64) - b.astype(np.float64)
    return float(np.mean(d * d))


def psnr(a: np.ndarray, b: np.ndarray, peak: float = 255.0) -> float:
    """PSNR in dB over all pixels and channels; ``inf`` for identical images."""
    m = mse(a, b)
    return math.inf if m == 0 else 10.0 * math.log10(peak * peak / m)


def ms_ssim(a: np.ndarray, b: np.ndarray) -> float:
    """MS-SSIM (data range 255) or NaN when a side is under :data:`MS_SSIM_MIN_SIDE` pixels."""
    if a.shape != b.shape:
        raise ValueError(f"images differ in size: {a.shape} and {b.shape}")
    if min(a.shape[0], a.shape[1]) < MS_SSIM_MIN_SIDE:
        return math.nan
    import torch
    from pytorch_msssim import ms_ssim as _ms_ssim

    def t(x: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.array(x, dtype=np.float64)).permute(2, 0, 1).unsqueeze(0)

    with torch.inference_mode():
        return float(_ms_ssim(t(a), t(b), data_range=255.0, size_average=True))


def ms_ssim_db(value: float) -> float:
    """-10 log10(1 - MS-SSIM); NaN stays NaN, a perfect score is ``inf``."""
    if math.isnan(value):
        return math.nan
    return math.inf if value >= 1.0 else -10.0 * math.log10(1.0 - value)


def measure(original: np.ndarray, reconstruction: np.ndarray) -> dict[str, float]:
    """``psnr-rgb``, ``ms-ssim-rgb`` and ``ms-ssim-rgb-db`` of one reconstruction."""
    m = ms_ssim(original, reconstruction)
    return {"psnr-rgb": psnr(original, reconstruction), "ms-ssim-rgb": m, "ms-ssim-rgb-db": ms_ssim_db(m)}


def mean(values) -> float:
    """Mean of the finite values (NaN ones skipped); NaN when there are none."""
    vals = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    return sum(vals) / len(vals) if vals else math.nan
