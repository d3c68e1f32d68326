"""Named LALIC configurations, in one registry.

``full`` is the paper's model and the layout of the official checkpoints.
The others shrink widths and depths for modest compute; ``tiny`` is the
conformance-vector configuration of the spec.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass(frozen=True)
class ModelConfig:
    N: int
    M: int
    dims: tuple[int, ...]
    depths: tuple[int, ...]
    groups: tuple[int, ...]
    description: str = field(default="", compare=False)

    def kwargs(self) -> dict:
        d = asdict(self)
        d.pop("description")
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


CONFIGS: dict[str, ModelConfig] = {}


def register_config(name: str, config: ModelConfig) -> None:
    CONFIGS[name] = config


def get_config(name: str) -> ModelConfig:
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
    "tiny",
    ModelConfig(
        N=16, M=48, dims=(16, 24, 32, 48, 32, 24), depths=(1, 1, 1, 1),
        groups=(8, 8, 16, 16), description="the conformance-vector config; for tests only",
    ),
)
