"""Latent codecs that lalic adds to CompressAI's (which LALIC uses directly)."""

from .bit_context import BitContextCodec

__all__ = ["BitContextCodec"]
