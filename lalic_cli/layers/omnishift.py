"""OmniShift: a re-parameterisable depthwise 5x5 convolution (from Restore-RWKV)."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class OmniShift(nn.Module):
    """Depthwise ``alpha0*I + alpha1*dw1x1 + alpha2*dw3x3 + alpha3*dw5x5``.

    Training runs the four branches. Inference runs one folded 5x5 kernel,
    ``conv5x5_reparam``, which is recomputed from the branches whenever the
    module leaves training mode or weights are loaded: a checkpoint's stored
    folded copy may be stale, so it is never trusted.
    """

    def __init__(self, dim: int):
        super().__init__()
        self.conv1x1 = nn.Conv2d(dim, dim, 1, groups=dim, bias=False)
        self.conv3x3 = nn.Conv2d(dim, dim, 3, padding=1, groups=dim, bias=False)
        self.conv5x5 = nn.Conv2d(dim, dim, 5, padding=2, groups=dim, bias=False)
        self.alpha = nn.Parameter(torch.randn(4))
        self.conv5x5_reparam = nn.Conv2d(dim, dim, 5, padding=2, groups=dim, bias=False)
        self.conv5x5_reparam.weight.requires_grad_(False)
        self.register_load_state_dict_post_hook(lambda module, _keys: module.fold())

    @torch.no_grad()
    def folded_weight(self) -> torch.Tensor:
        """The single 5x5 depthwise kernel equal to the sum of the branches."""
        w1 = F.pad(self.conv1x1.weight, (2, 2, 2, 2))
        w3 = F.pad(self.conv3x3.weight, (1, 1, 1, 1))
        identity = F.pad(torch.ones_like(self.conv1x1.weight), (2, 2, 2, 2))
        a = self.alpha
        return a[0] * identity + a[1] * w1 + a[2] * w3 + a[3] * self.conv5x5.weight

    @torch.no_grad()
    def fold(self) -> None:
        self.conv5x5_reparam.weight.copy_(self.folded_weight())

    def train(self, mode: bool = True) -> "OmniShift":
        if self.training and not mode:
            self.fold()
        return super().train(mode)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            a = self.alpha
            return (
                a[0] * x
                + a[1] * self.conv1x1(x)
                + a[2] * self.conv3x3(x)
                + a[3] * self.conv5x5(x)
            )
        return self.conv5x5_reparam(x)
