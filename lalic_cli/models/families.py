"""The model class of each family (``config.family``); "vq" is a training tool, not a codec."""

from .lalic import LALIC
from .mrt import MRT
from .vq import VQTokenizer

FAMILIES = {"lalic": LALIC, "mrt": MRT, "vq": VQTokenizer}
