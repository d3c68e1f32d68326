"""Named model configurations of both families, in one registry.

LALIC: ``full`` is the paper's model and the layout of the official checkpoints.
The others shrink widths and depths for modest compute; ``tiny`` is the
conformance-vector configuration of the spec. MRT: ``mrt-small`` is the bundled
extreme-rate model's, ``mrt-tiny`` is for tests. VQ: the tokenizers of MRT's stage-1
training, ``vq-small`` for ``mrt-small`` and ``vq-tiny`` for ``mrt-tiny`` (same generator widths).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import ClassVar


class _Kwargs:
    def kwargs(self) -> dict:
        """The model constructor's keyword arguments (tuples as lists, no description)."""
        d = asdict(self)
        d.pop("description")
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


@dataclass(frozen=True)
class ModelConfig(_Kwargs):
    family: ClassVar[str] = "lalic"
    N: int
    M: int
    dims: tuple[int, ...]
    depths: tuple[int, ...]
    groups: tuple[int, ...]
    description: str = field(default="", compare=False)


@dataclass(frozen=True)
class MrtConfig(_Kwargs):
    """Arguments of ``models.mrt.MRT``; ``bits`` holds the bits per token of each quality."""

    family: ClassVar[str] = "mrt"
    dim: int
    tokens: int
    bits: tuple[int, ...]
    depth: int
    heads: int
    ctx_dim: int
    gen_dims: tuple[int, ...]
    description: str = field(default="", compare=False)


@dataclass(frozen=True)
class VqConfig(_Kwargs):
    """Arguments of ``models.vq.VQTokenizer``; ``gen_dims`` must be its MRT config's."""

    family: ClassVar[str] = "vq"
    gen_dims: tuple[int, ...]
    codes: int
    code_dim: int
    description: str = field(default="", compare=False)


Config = ModelConfig | MrtConfig | VqConfig
CONFIGS: dict[str, Config] = {}


def register_config(name: str, config: Config) -> None:
    CONFIGS[name] = config


def get_config(name: str) -> Config:
    try:
        return CONFIGS[name]
    except KeyError:
        raise KeyError(f"unknown model config {name!r} (known: {', '.join(sorted(CONFIGS))})") from None


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
