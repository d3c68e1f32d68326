"""Neural network layers of LALIC: OmniShift, Bi-RWKV blocks, entropy-parameter blocks."""

from .entropy_parameters import EntropyParametersBlock
from .omnishift import OmniShift
from .rwkv import ChannelMix, RwkvBlock, SpatialMix

__all__ = ["ChannelMix", "EntropyParametersBlock", "OmniShift", "RwkvBlock", "SpatialMix"]
