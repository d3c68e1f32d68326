"""LALIC: Bi-RWKV transforms with the RWKV-SCCTX entropy model."""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn
from compressai.entropy_models import EntropyBottleneck
from compressai.latent_codecs import (
    ChannelGroupsLatentCodec,
    CheckerboardLatentCodec,
    GaussianConditionalLatentCodec,
    HyperLatentCodec,
    HyperpriorLatentCodec,
)
from compressai.layers import CheckerboardMaskedConv2d, conv1x1, conv3x3, sequential_channel_ramp
from compressai.models import SimpleVAECompressionModel

from ..layers import EntropyParametersBlock, RwkvBlock


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


class LALIC(SimpleVAECompressionModel):
    """LALIC (Feng et al., CVPR 2025) in the module layout of the official checkpoints.

    ``forward``, ``compress``, ``decompress``, ``update`` and ``load_state_dict``
    behave as in CompressAI models. Inputs must be padded to a multiple of
    ``downsampling_factor``.
    """

    downsampling_factor = 64

    def __init__(
        self,
        N: int = 128,
        M: int = 320,
        dims: Sequence[int] = (96, 144, 256, 320, 256, 192),
        depths: Sequence[int] = (2, 4, 6, 6),
        groups: Sequence[int] | None = None,
    ):
        super().__init__()
        n1, n2, n3, n4, n5, n6 = dims
        l1, l2, l3, l4 = depths
        if n4 != M:
            raise ValueError(f"dims[3] ({n4}) must equal M ({M})")
        groups = list(groups) if groups is not None else [16, 16, 32, 64, M - 128]
        if sum(groups) != M:
            raise ValueError(f"channel groups {groups} must sum to M={M}")
        self.N, self.M, self.groups = N, M, groups

        self.g_a = _stage(
            _conv(3, n1, 5), _blocks(n1, l1),
            _conv(n1, n2, 3), _blocks(n2, l2),
            _conv(n2, n3, 3), _blocks(n3, l3),
            _conv(n3, n4, 3),
        )
        self.g_s = _stage(
            _deconv(n4, n3, 3), _blocks(n3, l3),
            _deconv(n3, n2, 3), _blocks(n2, l2),
            _deconv(n2, n1, 3), _blocks(n1, l1),
            _deconv(n1, 3, 5),
        )
        self.h_a = _stage(_conv(n4, n5, 5), _blocks(n5, l4), _conv(n5, n6, 5))
        self.h_s = _stage(_deconv(n6, n5, 5), _blocks(n5, l4), _deconv(n5, n4, 5))

        channel_context = {
            f"y{k}": nn.Sequential(
                conv3x3(sum(groups[:k]), M),
                *_blocks(M, 2, hidden_rate=8),
                conv1x1(M, 2 * groups[k]),
            )
            for k in range(1, len(groups))
        }
        scctx = {
            f"y{k}": CheckerboardLatentCodec(
                latent_codec={"y": GaussianConditionalLatentCodec(quantizer="ste")},
                context_prediction=CheckerboardMaskedConv2d(g, 2 * g, kernel_size=5, stride=1, padding=2),
                entropy_parameters=sequential_channel_ramp(
                    2 * g + (k > 0) * 2 * g + M,
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

    @property
    def num_coded_tensors(self) -> int:
        """Strings per image: two checkerboard halves per channel group, then z."""
        return 2 * len(self.groups) + 1

    def fold_omnishift(self) -> None:
        """Recompute every folded OmniShift kernel from its branches."""
        from ..layers import OmniShift

        for m in self.modules():
            if isinstance(m, OmniShift):
                m.fold()
