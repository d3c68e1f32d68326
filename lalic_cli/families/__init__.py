"""The model families, one plug-in each, and their registry.

A family is a module here that registers one :class:`Family` and its model configurations:
its qualities, what its ``.lal`` files hold, its bench descriptor, and the names of its heavy
parts (its coding plug-in, a ``coding.Coder``, and its training recipes), imported on first
use. Codec, container, command line, weights, training and bench look families up here;
none names one. A new family is its own modules plus one name in the import below.

Nothing heavy is imported here: the ``lalic`` command reads this registry at start-up.
"""

from . import lalic, mrt  # registers each family, in this order (the first is the default)
from .coding import Coded, Coder, tensor_crc
from .configs import CONFIGS, Config, get_config, register_config
from .family import Container, Family
from .registry import (FAMILIES, FamilyTable, family_for_code, get_family, refines, refining_labels,
                       register_family, tool_description)

#: the family of files and weights that name none (.lal versions 1 and 2, weights without metadata)
DEFAULT_FAMILY = next(iter(FAMILIES))

__all__ = [
    "CONFIGS", "DEFAULT_FAMILY", "FAMILIES", "Coded", "Coder", "Config", "Container", "Family", "FamilyTable",
    "family_for_code", "get_config", "get_family", "refines", "refining_labels", "register_config",
    "register_family", "tensor_crc", "tool_description",
]
