"""Entropy models that lalic adds to CompressAI's."""

from .bernoulli import BernoulliCoder

__all__ = ["BernoulliCoder"]
