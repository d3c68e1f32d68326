"""Model definitions. Their configurations live with their families (``lalic_cli.families``),
in one registry, re-exported here.

MRT and the VQ tokenizer are imported on first use: coding with LALIC, the common
case, does not pay for their modules (and CompressAI's parts they alone use)."""

from typing import TYPE_CHECKING

from .._lazy import lazy_exports
from ..families import CONFIGS, Config, get_config
from ..families.lalic import ModelConfig
from ..families.mrt import MrtConfig, VqConfig
from .lalic import LALIC

if TYPE_CHECKING:
    from .mrt import MRT
    from .vq import VQTokenizer

__all__ = ["CONFIGS", "Config", "LALIC", "MRT", "ModelConfig", "MrtConfig", "VQTokenizer", "VqConfig", "get_config"]

__getattr__, __dir__ = lazy_exports(__name__, {"MRT": ".mrt", "VQTokenizer": ".vq"})
