"""Model definitions and the registry of named configurations and families."""

from .configs import CONFIGS, ModelConfig, MrtConfig, get_config
from .lalic import LALIC
from .mrt import MRT

#: model class of each family (``config.family``)
FAMILIES = {"lalic": LALIC, "mrt": MRT}

__all__ = ["CONFIGS", "FAMILIES", "LALIC", "MRT", "ModelConfig", "MrtConfig", "get_config"]
