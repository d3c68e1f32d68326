"""Latent codecs that lalic adds to CompressAI's: the bit-context codec (MRT), and, for
LALIC, CompressAI's checkerboard and Gaussian conditional codecs without the work whose
result they throw away."""

from .bit_context import BitContextCodec
from .checkerboard import CheckerboardLatentCodec
from .gaussian_conditional import GaussianConditionalLatentCodec

__all__ = ["BitContextCodec", "CheckerboardLatentCodec", "GaussianConditionalLatentCodec"]
