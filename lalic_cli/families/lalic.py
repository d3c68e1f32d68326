"""LALIC, the paper's codec (hyperprior + channel groups): its configurations and its descriptor.

``full`` is the paper's model and the layout of the official checkpoints. The others shrink
widths and depths for modest compute; ``tiny`` is the conformance-vector configuration of
the spec. Its coding plug-in is ``lalic_coder``, its training recipe ``training/lalic_recipes``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

from .._lazy import load
from .configs import Config, register_config
from .family import Container, Family
from .registry import register_family

if TYPE_CHECKING:
    import torch

KEY = "lalic"
# q1..q6: the official lambdas; q7, q8: the ladder continued (models/rates.py) for
# variable-rate weights trained that far
QUALITIES = (1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0)


@dataclass(frozen=True)
class ModelConfig(Config):
    """Arguments of ``models.lalic.LALIC`` (without ``num_rates``, which the weights decide)."""

    family: ClassVar[str] = KEY
    model: ClassVar[str] = "lalic_cli.models.lalic:LALIC"
    official_layout: ClassVar[bool] = True
    N: int
    M: int
    dims: tuple[int, ...]
    depths: tuple[int, ...]
    groups: tuple[int, ...]
    description: str = field(default="", compare=False)

    def probe(self) -> tuple[str, int]:
        return "g_a.0.weight", self.dims[0]

    def build(self, rates: int = 0) -> torch.nn.Module:
        return load(self.model)(**self.kwargs(), num_rates=rates)


register_config(
    "full",
    ModelConfig(
        N=128, M=320, dims=(96, 144, 256, 320, 256, 192), depths=(2, 4, 6, 6),
        groups=(16, 16, 32, 64, 192), description="the paper's model (official checkpoints)",
    ),
)
register_config(
    "lite",
    ModelConfig(
        N=64, M=192, dims=(48, 96, 144, 192, 128, 96), depths=(1, 2, 2, 2),
        groups=(16, 16, 32, 128), description="narrower and shallower, for CPU training",
    ),
)
register_config(
    "small",
    ModelConfig(
        N=48, M=128, dims=(32, 64, 96, 128, 96, 64), depths=(1, 1, 1, 1),
        groups=(16, 16, 32, 64), description="the bundled weights' config: trains on a CPU in hours",
    ),
)
register_config(
    "small-d2",
    ModelConfig(
        N=48, M=128, dims=(32, 64, 96, 128, 96, 64), depths=(2, 2, 2, 2),
        groups=(16, 16, 32, 64), description="small with two blocks per stage: grown from small's weights",
    ),
)
register_config(
    "small-m192",
    ModelConfig(
        N=48, M=192, dims=(32, 64, 96, 128, 96, 64), depths=(1, 1, 1, 1),
        groups=(16, 16, 32, 64, 64), description="small with a fifth channel group (M 192): grown from small's weights",
    ),
)
register_config(
    "tiny",
    ModelConfig(
        N=16, M=48, dims=(16, 24, 32, 48, 32, 24), depths=(1, 1, 1, 1),
        groups=(8, 8, 16, 16), description="the conformance-vector config; for tests only",
    ),
)

FAMILY = register_family(Family(
    key=KEY,
    label="LALIC",
    qualities=QUALITIES,
    whole_qualities=False,
    anchors=True,
    # z_shape: the hyper-latent z, 64 pixels per element (image -> y is /16, y -> z is /4)
    container=Container(code=0, stride=64),
    coder_module="lalic_cli.families.lalic_coder",
    recipes_module="lalic_cli.training.lalic_recipes",
    refines=True,
    bench_rows=((f"{KEY}-q1", "LALIC q1", QUALITIES[0]),),
))
