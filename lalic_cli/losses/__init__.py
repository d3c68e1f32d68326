"""Training losses beyond rate and pixel distortion."""

from .perceptual import Perceptual, load_perceptual, vgg16_features

__all__ = ["Perceptual", "load_perceptual", "vgg16_features"]
