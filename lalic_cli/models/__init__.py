"""Model definitions and the registry of named configurations and families."""

from .configs import CONFIGS, ModelConfig, MrtConfig, VqConfig, get_config
from .lalic import LALIC
from .mrt import MRT
from .vq import VQTokenizer

#: model class of each family (``config.family``); "vq" is a training tool, not a codec
FAMILIES = {"lalic": LALIC, "mrt": MRT, "vq": VQTokenizer}

__all__ = ["CONFIGS", "FAMILIES", "LALIC", "MRT", "ModelConfig", "MrtConfig", "VQTokenizer", "VqConfig", "get_config"]
