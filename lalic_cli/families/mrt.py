"""MRT, the extreme-rate family (below 0.03 bpp; docs/mrt.md): its configurations and its descriptor.

``mrt-small`` is the bundled extreme-rate model's, ``mrt-tiny`` is for tests. The VQ
tokenizers are MRT's training tools, not codecs: the targets of stage 1, ``vq-small`` for
``mrt-small`` and ``vq-tiny`` for ``mrt-tiny`` (same generator widths). Its coding plug-in
is ``mrt_coder``, its training recipes ``training/mrt_recipes``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

from .configs import Config, get_config, register_config
from .family import Container, Family
from .registry import register_family

if TYPE_CHECKING:
    from ..zoo.registry import WeightsEntry

KEY = "mrt"


@dataclass(frozen=True)
class MrtConfig(Config):
    """Arguments of ``models.mrt.MRT``; ``bits`` holds the bits per token of each quality."""

    family: ClassVar[str] = KEY
    model: ClassVar[str] = "lalic_cli.models.mrt:MRT"
    dim: int
    tokens: int
    bits: tuple[int, ...]
    depth: int
    heads: int
    ctx_dim: int
    gen_dims: tuple[int, ...]
    description: str = field(default="", compare=False)

    def probe(self) -> tuple[str, int]:
        return "patch_embed.weight", self.dim


@dataclass(frozen=True)
class VqConfig(Config):
    """Arguments of ``models.vq.VQTokenizer``; ``gen_dims`` must be its MRT config's."""

    family: ClassVar[str] = "vq"
    model: ClassVar[str] = "lalic_cli.models.vq:VQTokenizer"
    gen_dims: tuple[int, ...]
    codes: int
    code_dim: int
    description: str = field(default="", compare=False)

    def probe(self) -> tuple[str, int]:
        return "encoder.0.weight", self.gen_dims[-1]


register_config(
    "mrt-small",
    MrtConfig(
        dim=96, tokens=64, bits=(8, 16, 24), depth=2, heads=4, ctx_dim=48, gen_dims=(96, 64, 32, 24, 16),
        description="MRT, the bundled extreme-rate weights' config (0.005-0.02 bpp)",
    ),
)
register_config(
    "mrt-tiny",
    MrtConfig(
        dim=32, tokens=16, bits=(4, 8), depth=1, heads=2, ctx_dim=16, gen_dims=(32, 16, 16, 8, 8),
        description="MRT for tests only",
    ),
)
register_config(
    "vq-small",
    VqConfig(gen_dims=(96, 64, 32, 24, 16), codes=1024, code_dim=16,
             description="tokenizer for mrt-small's stage 1 (its decoder is mrt-small's generator)"),
)
register_config(
    "vq-tiny",
    VqConfig(gen_dims=(32, 16, 16, 8, 8), codes=64, code_dim=8, description="tokenizer for mrt-tiny; for tests only"),
)


def _rate_points(entry: WeightsEntry) -> int:
    """Qualities of MRT weights: one per bit budget of their config."""
    return len(get_config(entry.config).bits)


FAMILY = register_family(Family(
    key=KEY,
    label="MRT",
    # three rate points: the bundled mrt-small config's bit budgets (tests/test_bench_mrt.py checks)
    qualities=(1.0, 2.0, 3.0),
    whole_qualities=True,
    anchors=False,
    # z_shape: 256x256 windows (rows, cols); num_groups: bit groups; the context model is portable
    container=Container(code=1, stride=256, entropy="exact", z_string=False, fields=("windows", "bit_groups")),
    coder_module="lalic_cli.families.mrt_coder",
    recipes_module="lalic_cli.training.mrt_recipes",
    comparisons=("lalic-q1", "avif-min", "avif-down2", "avif-down4", "webp-down2", "webp-down4"),
    tools=((VqConfig.family, "a tokenizer for training MRT's stage 1, not a codec"),),
    rate_points=_rate_points,
))
