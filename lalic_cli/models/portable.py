"""The portable entropy path: a CPU copy of a model's latent codec whose every
decision-making layer is exact (``lalic_cli.layers.exact``).

Built once per loaded model (post-training conversion; nothing to store). ``h_a``
runs only at the encoder and stays in float; ``h_s``, the channel contexts, the
checkerboard contexts and the parameter layers, which decide the CDFs and the means,
become exact. See ``docs/portable.md``.
"""

from __future__ import annotations

import copy
import weakref

import torch.nn as nn

from ..layers.exact import to_exact

__all__ = ["portable_latent_codec"]

_cache: "weakref.WeakKeyDictionary[nn.Module, nn.Module]" = weakref.WeakKeyDictionary()


def portable_latent_codec(model: nn.Module) -> nn.Module:
    """The model's ``latent_codec`` on the CPU with the entropy path made exact (cached)."""
    lc = _cache.get(model)
    if lc is None:
        lc = copy.deepcopy(model.latent_codec).cpu().eval()
        hyper = lc.latent_codec["hyper"]
        hyper.h_s = to_exact(hyper.h_s)
        groups = lc.latent_codec["y"]
        for name in list(groups.channel_context):
            groups.channel_context[name] = to_exact(groups.channel_context[name])
        for codec in groups.latent_codec.values():
            codec.context_prediction = to_exact(codec.context_prediction)
            codec.entropy_parameters = to_exact(codec.entropy_parameters)
        _cache[model] = lc
    return lc
