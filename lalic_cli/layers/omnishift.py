"""OmniShift: a re-parameterisable depthwise 5x5 convolution (from Restore-RWKV).

``ndim=2`` is LALIC's map shift; ``ndim=1`` is the same operator on a 1-D token
sequence (kernel 5), used where Bi-RWKV blocks run over sequences (MRT).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

_CONVS = {1: nn.Conv1d, 2: nn.Conv2d}


class OmniShift(nn.Module):
    """Depthwise ``alpha0*I + alpha1*dw1 + alpha2*dw3 + alpha3*dw5`` in 1 or 2 dimensions.

    Training runs the four branches. Inference runs one folded size-5 kernel,
    ``conv5x5_reparam``, which is recomputed from the branches whenever the
    module leaves training mode or weights are loaded: a checkpoint's stored
    folded copy may be stale, so it is never trusted.
    """

    def __init__(self, dim: int, ndim: int = 2):
        super().__init__()
        conv = _CONVS[ndim]
        self.ndim = ndim
        self.conv1x1 = conv(dim, dim, 1, groups=dim, bias=False)
        self.conv3x3 = conv(dim, dim, 3, padding=1, groups=dim, bias=False)
        self.conv5x5 = conv(dim, dim, 5, padding=2, groups=dim, bias=False)
        self.alpha = nn.Parameter(torch.randn(4))
        self.conv5x5_reparam = conv(dim, dim, 5, padding=2, groups=dim, bias=False)
        self.conv5x5_reparam.weight.requires_grad_(False)
        self.register_load_state_dict_post_hook(lambda module, _keys: module.fold())

    def _kernel(self) -> torch.Tensor:
        """The single size-5 depthwise kernel equal to the sum of the branches
        (differentiable: training convolves with it and the gradient reaches every branch)."""
        w1 = F.pad(self.conv1x1.weight, (2, 2) * self.ndim)
        w3 = F.pad(self.conv3x3.weight, (1, 1) * self.ndim)
        identity = F.pad(torch.ones_like(self.conv1x1.weight), (2, 2) * self.ndim)
        a = self.alpha
        return a[0] * identity + a[1] * w1 + a[2] * w3 + a[3] * self.conv5x5.weight

    @torch.no_grad()
    def folded_weight(self) -> torch.Tensor:
        return self._kernel()

    @torch.no_grad()
    def fold(self) -> None:
        self.conv5x5_reparam.weight.copy_(self.folded_weight())

    def train(self, mode: bool = True) -> "OmniShift":
        if self.training and not mode:
            self.fold()
        return super().train(mode)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            # One convolution with the branches folded in autograd, not four passes: the
            # same function and gradients (up to rounding), 4x less activation traffic, and
            # no 1x1 depthwise conv, which PyTorch's CPU path runs one channel at a time
            # for small batches on one thread.
            conv = F.conv1d if self.ndim == 1 else F.conv2d
            kernel = self._kernel()
            if kernel.requires_grad:  # a channels-last input gives the kernel's gradient
                # size-1-dim strides DDP's buckets do not match (a warning per rank)
                kernel.register_hook(lambda g: g.clone(memory_format=torch.contiguous_format))
            return conv(x, kernel, padding=2, groups=x.shape[1])
        return self.conv5x5_reparam(x)
