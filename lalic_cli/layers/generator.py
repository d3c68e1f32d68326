"""The pixel generator: a convolutional decoder from a 16x-downsampled feature grid."""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn


class ResBlock(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(dim, dim, 3, padding=1), nn.GELU(), nn.Conv2d(dim, dim, 3, padding=1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class PixelGenerator(nn.Module):
    """``dims[0]`` features at 1/16 resolution -> RGB, four x2 pixel-shuffle stages.

    Residual blocks run on the first ``res_stages`` resolutions only: at full size
    they would cost most of a training step on a CPU.
    """

    def __init__(self, dims: Sequence[int], res_stages: int = 2):
        super().__init__()
        if len(dims) != 5:
            raise ValueError("the generator needs 5 widths (1/16 .. full resolution)")
        layers: list[nn.Module] = [nn.Conv2d(dims[0], dims[0], 3, padding=1), ResBlock(dims[0])]
        for i, (cin, cout) in enumerate(zip(dims[:-1], dims[1:])):
            layers += [nn.Conv2d(cin, 4 * cout, 3, padding=1), nn.PixelShuffle(2), nn.GELU()]
            if i + 1 < res_stages:
                layers.append(ResBlock(cout))
        layers.append(nn.Conv2d(dims[-1], 3, 3, padding=1))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x) + 0.5  # start from mid-grey: the first steps need not find the mean
