"""Model definitions and the registry of named configurations."""

from .configs import CONFIGS, ModelConfig, get_config
from .lalic import LALIC

__all__ = ["CONFIGS", "LALIC", "ModelConfig", "get_config"]
