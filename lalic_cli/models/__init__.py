"""Model definitions and the registry of named configurations and families.

MRT and the VQ tokenizer are imported on first use: coding with LALIC, the common
case, does not pay for their modules (and CompressAI's parts they alone use)."""

from typing import TYPE_CHECKING

from .._lazy import lazy_exports
from .configs import CONFIGS, ModelConfig, MrtConfig, VqConfig, get_config
from .lalic import LALIC

if TYPE_CHECKING:
    from .families import FAMILIES
    from .mrt import MRT
    from .vq import VQTokenizer

__all__ = ["CONFIGS", "FAMILIES", "LALIC", "MRT", "ModelConfig", "MrtConfig", "VQTokenizer", "VqConfig", "get_config"]

__getattr__, __dir__ = lazy_exports(__name__, {"FAMILIES": ".families", "MRT": ".mrt", "VQTokenizer": ".vq"})


def model_class(family: str) -> type:
    """The model class of a family (``config.family``), imported on first use."""
    if family == "lalic":
        return LALIC
    return __getattr__("FAMILIES")[family]
