"""LALIC: Bi-RWKV transforms with the RWKV-SCCTX entropy model."""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn as nn
from compressai.entropy_models import EntropyBottleneck
from compressai.latent_codecs import (
    ChannelGroupsLatentCodec,
    HyperLatentCodec,
    HyperpriorLatentCodec,
)
from compressai.layers import CheckerboardMaskedConv2d, conv1x1, conv3x3, sequential_channel_ramp
from compressai.models import SimpleVAECompressionModel

from ..latent_codecs import CheckerboardLatentCodec, GaussianConditionalLatentCodec
from ..layers import EntropyParametersBlock, RwkvBlock
from ..precision import transforms_in_bf16


def _conv(cin: int, cout: int, k: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, k, stride=2, padding=k // 2)


def _deconv(cin: int, cout: int, k: int) -> nn.ConvTranspose2d:
    return nn.ConvTranspose2d(cin, cout, k, stride=2, padding=k // 2, output_padding=1)


def _stage(*parts) -> nn.Sequential:
    """One flat Sequential, so module indices match the official checkpoints."""
    flat: list[nn.Module] = []
    for p in parts:
        flat.extend(p if isinstance(p, list) else [p])
    return nn.Sequential(*flat)


def _blocks(dim: int, depth: int, hidden_rate: int = 4) -> list[nn.Module]:
    return [RwkvBlock(dim, hidden_rate) for _ in range(depth)]


def _transform(stages: nn.Sequential, x: torch.Tensor, bf16: bool) -> torch.Tensor:
    """A transform in channels-last; with ``bf16``, its Bi-RWKV blocks under CPU autocast
    (bf16 products, ``layers/rwkv.py``) and its strided convolutions in float32: they are
    8 % of the arithmetic, and rounding their inputs and outputs to bf16 made a quarter
    of bf16's change to ``y`` and half of its error in the pixels, for no time saved."""
    x = x.contiguous(memory_format=torch.channels_last)
    if not bf16:
        return stages(x).contiguous()
    for stage in stages:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=isinstance(stage, RwkvBlock)):
            x = stage(x)
    return x.contiguous()


class LALIC(SimpleVAECompressionModel):
    """LALIC (Feng et al., CVPR 2025) in the module layout of the official checkpoints.

    ``forward``, ``compress``, ``decompress``, ``update`` and ``load_state_dict``
    behave as in CompressAI models. Inputs must be padded to a multiple of
    ``downsampling_factor``.

    ``M`` is the width of the latent ``y`` (the sum of ``groups``); ``dims[3]`` is the
    width of the hyper-synthesis output and of the channel contexts. The official
    layout has them equal; a latent grown by appending channel groups
    (``models/grow.py``) keeps ``dims[3]`` and raises ``M``.
    """

    downsampling_factor = 64
    # g_a and g_s in compress/decompress: "auto", "float32" or "bf16" (precision.py);
    # None: $LALIC_PRECISION, else auto
    precision: str | None = None

    def __init__(
        self,
        N: int = 128,
        M: int = 320,
        dims: Sequence[int] = (96, 144, 256, 320, 256, 192),
        depths: Sequence[int] = (2, 4, 6, 6),
        groups: Sequence[int] | None = None,
        num_rates: int = 0,
    ):
        super().__init__()
        n1, n2, n3, n4, n5, n6 = dims
        l1, l2, l3, l4 = depths
        if M < n4:
            raise ValueError(f"M ({M}) must be at least dims[3] ({n4})")
        groups = list(groups) if groups is not None else [16, 16, 32, 64, M - 128]
        if sum(groups) != M:
            raise ValueError(f"channel groups {groups} must sum to M={M}")
        self.N, self.M, self.groups = N, M, groups

        self.g_a = _stage(
            _conv(3, n1, 5), _blocks(n1, l1),
            _conv(n1, n2, 3), _blocks(n2, l2),
            _conv(n2, n3, 3), _blocks(n3, l3),
            _conv(n3, M, 3),
        )
        self.g_s = _stage(
            _deconv(M, n3, 3), _blocks(n3, l3),
            _deconv(n3, n2, 3), _blocks(n2, l2),
            _deconv(n2, n1, 3), _blocks(n1, l1),
            _deconv(n1, 3, 5),
        )
        self.h_a = _stage(_conv(M, n5, 5), _blocks(n5, l4), _conv(n5, n6, 5))
        self.h_s = _stage(_deconv(n6, n5, 5), _blocks(n5, l4), _deconv(n5, n4, 5))

        channel_context = {
            f"y{k}": nn.Sequential(
                conv3x3(sum(groups[:k]), n4),
                *_blocks(n4, 2, hidden_rate=8),
                conv1x1(n4, 2 * groups[k]),
            )
            for k in range(1, len(groups))
        }
        scctx = {
            f"y{k}": CheckerboardLatentCodec(
                latent_codec={"y": GaussianConditionalLatentCodec(quantizer="ste")},
                context_prediction=CheckerboardMaskedConv2d(g, 2 * g, kernel_size=5, stride=1, padding=2),
                entropy_parameters=sequential_channel_ramp(
                    2 * g + (k > 0) * 2 * g + n4,
                    2 * g,
                    min_ch=2 * N,
                    num_layers=3,
                    make_layer=EntropyParametersBlock,
                    make_act=nn.Identity,
                    kernel_size=1,
                ),
            )
            for k, g in enumerate(groups)
        }
        self.latent_codec = HyperpriorLatentCodec(
            latent_codec={
                "y": ChannelGroupsLatentCodec(
                    groups=groups, channel_context=channel_context, latent_codec=scctx
                ),
                "hyper": HyperLatentCodec(
                    entropy_bottleneck=EntropyBottleneck(n6), h_a=self.h_a, h_s=self.h_s, quantizer="ste"
                ),
            }
        )

        self.num_rates = num_rates
        if num_rates:
            # Gain units (Cui et al., CVPR 2021): one channel gain vector per rate on y
            # before quantisation and its inverse after, so one model covers every quality.
            # Initialised spread out (x0.4 .. x2.5): from all-ones, Adam moves the gains
            # too slowly for short trainings and every quality codes alike.
            spread = torch.logspace(math.log10(0.4), math.log10(2.5), num_rates)[:, None]
            self.gain = nn.Parameter(spread.expand(num_rates, M).clone())
            self.inv_gain = nn.Parameter((1 / spread).expand(num_rates, M).clone())

    def float_tables(self) -> None:
        """Build CompressAI's coder tables where they are still empty. The loader leaves
        them for the first use of the model's own entropy path: the portable path builds
        its own, so a process that codes only through it never pays for them."""
        self.update()

    @property
    def variable_rate(self) -> bool:
        return self.num_rates > 0

    @property
    def max_quality(self) -> int:
        """The top quality these weights code: their rates, or q6 of the official ladder
        that fixed-rate weights are labelled on."""
        return self.num_rates or 6

    def gains(self, quality: float | torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Gain and inverse gain (``B x M x 1 x 1``) for qualities in ``[1, num_rates]``.

        Fractional qualities interpolate neighbouring levels geometrically.
        """
        if not self.variable_rate:
            return None
        if quality is None:
            raise ValueError("a variable-rate model needs a quality")
        q = torch.as_tensor(quality, dtype=self.gain.dtype, device=self.gain.device).reshape(-1)
        q = q.clamp(1, self.num_rates) - 1
        lo = q.floor().long().clamp(max=self.num_rates - 2) if self.num_rates > 1 else q.long()
        frac = (q - lo).unsqueeze(1)
        hi = (lo + 1).clamp(max=self.num_rates - 1)

        def interp(table: torch.Tensor) -> torch.Tensor:
            t = table.abs().clamp_min(1e-6)
            return (t[lo] ** (1 - frac) * t[hi] ** frac)[..., None, None]

        return interp(self.gain), interp(self.inv_gain)

    def analysis(self, x: torch.Tensor, bf16: bool = False) -> torch.Tensor:
        """``g_a`` in channels-last (the blocks' tokens are then views, no transposes);
        ``y`` leaves in the standard layout and in float32, so the entropy model runs the
        same operations at encoding as at decoding. ``bf16``: see ``_transform``."""
        return _transform(self.g_a, x, bf16)

    def synthesis(self, y_hat: torch.Tensor, bf16: bool = False) -> torch.Tensor:
        return _transform(self.g_s, y_hat, bf16)

    def transforms_in_bf16(self, x: torch.Tensor) -> bool:
        """Whether ``compress`` and ``decompress`` run g_a and g_s in bf16 on ``x``'s device."""
        return transforms_in_bf16(x.device, self.precision)

    def forward(self, x: torch.Tensor, quality: float | torch.Tensor | None = None) -> dict:
        y = self.analysis(x)
        g = self.gains(quality)
        y_out = self.latent_codec(y if g is None else y * g[0])
        y_hat = y_out["y_hat"] if g is None else y_out["y_hat"] * g[1]
        return {"x_hat": self.synthesis(y_hat), "likelihoods": y_out["likelihoods"]}

    def compress(self, x: torch.Tensor, quality: float | None = None, latent_codec: nn.Module | None = None) -> dict:
        """Strings, shapes and the quantised symbols ``y_hat`` (before any inverse gain).

        ``latent_codec`` replaces the model's own (the portable one runs on the CPU)."""
        y = self.analysis(x, self.transforms_in_bf16(x))
        g = self.gains(quality)
        y = y if g is None else y * g[0]
        if latent_codec is None:
            self.float_tables()
            return self.latent_codec.compress(y)
        return latent_codec.compress(y.cpu())

    def decompress(self, strings, shape, quality: float | None = None, latent_codec: nn.Module | None = None) -> dict:
        """``x_hat`` in [0, 1], and the decoded symbols ``y_hat`` for checking."""
        if latent_codec is None:
            self.float_tables()
        y_hat = (latent_codec or self.latent_codec).decompress(strings, shape)["y_hat"]
        y_hat = y_hat.to(self.g_s[0].weight.device)
        g = self.gains(quality)
        x_hat = self.synthesis(y_hat if g is None else y_hat * g[1], self.transforms_in_bf16(y_hat)).clamp_(0, 1)
        return {"x_hat": x_hat, "y_hat": y_hat}

    @property
    def num_coded_tensors(self) -> int:
        """Strings per image: two checkerboard halves per channel group, then z."""
        return 2 * len(self.groups) + 1
