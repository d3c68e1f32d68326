"""An LPIPS-style perceptual distance from a user's VGG16 weights (spec MRT.md B.6).

LPIPS weights the channels of each VGG stage by learned linear heads; those heads (and
the VGG16 backbone the ``lpips`` package downloads) are not available offline. This is
LPIPS with uniform weights: unit-normalised features of the five stages (relu1_2 ..
relu5_3), squared differences summed over channels, averaged over positions, then
averaged over the stages.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import InputError

#: torchvision's ``vgg16().features``: conv widths, "M" for a 2x2 max-pool
VGG16_LAYOUT = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512)
#: index after each stage's last ReLU (relu1_2, relu2_2, relu3_3, relu4_3, relu5_3)
STAGE_ENDS = (4, 9, 16, 23, 30)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def vgg16_features() -> nn.Sequential:
    """``torchvision.models.vgg16().features`` up to relu5_3, with the same indices, so
    that its ``features.*`` state dict loads. Built here rather than imported because
    torchvision is not a dependency of lalic and the layout is the list above."""
    layers: list[nn.Module] = []
    cin = 3
    for v in VGG16_LAYOUT:
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(cin, v, 3, padding=1), nn.ReLU()]
            cin = v
    return nn.Sequential(*layers)


class Perceptual(nn.Module):
    """Frozen VGG16 features -> per-image distance between ``x_hat`` and ``x`` (both in [0, 1])."""

    def __init__(self, features: nn.Sequential):
        super().__init__()
        self.stages = nn.ModuleList(features[a:b] for a, b in zip((0,) + STAGE_ENDS, STAGE_ENDS))
        self.requires_grad_(False).eval()
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))

    def forward(self, x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        h = (torch.cat([x_hat, x]) - self.mean) / self.std
        total = 0.0
        for stage in self.stages:
            h = stage(h)
            a, b = F.normalize(h, dim=1, eps=1e-10).chunk(2)
            total = total + (a - b).square().sum(1).mean((1, 2))
        return total / len(self.stages)


def load_perceptual(path: str | Path) -> Perceptual:
    """The distance with VGG16 weights from ``path``: a torchvision ``vgg16`` state dict
    (``features.*`` keys; the classifier's are ignored) or its ``features`` alone."""
    from ..zoo.checkpoint import load_checkpoint_file

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file (perceptual weights)")
    sd = load_checkpoint_file(path)
    sd = {k.removeprefix("features."): v for k, v in sd.items() if not k.startswith("classifier.")}
    features = vgg16_features()
    want = features.state_dict()
    wrong = [k for k in want if k not in sd or sd[k].shape != want[k].shape]
    if wrong:
        raise InputError(f"{path}: not a torchvision VGG16 state dict ({len(wrong)} of its {len(want)} "
                         f"convolution tensors missing or of another shape, e.g. features.{wrong[0]})")
    features.load_state_dict({k: sd[k].float() for k in want})
    return Perceptual(features)
