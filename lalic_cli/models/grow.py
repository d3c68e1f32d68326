"""Growing trained LALIC weights into a deeper config without changing what they code.

Capacity for the high-rate end without a restart from scratch: the trained blocks keep
their places in each stage, and every new Bi-RWKV block enters after them with both
residual scales (``gamma1``, ``gamma2``) at zero. A pre-norm residual block with zero
scales is the identity, so the grown model codes exactly what the trained one did
before its first step; the scales get gradients at once, and the new blocks' weights
train as soon as the scales move off zero (as in ReZero, Bachlechner et al., 2020).
"""

from __future__ import annotations

import re
from typing import Mapping

import torch

from .configs import ModelConfig
from .lalic import LALIC

_STAGE_KEY = re.compile(r"(^|\.)(g_a|g_s|h_a|h_s)\.(\d+)\.")


def _segments(name: str, depths: tuple[int, ...]) -> list[int]:
    """Lengths of the alternating conv / block runs of one flat stage Sequential."""
    l1, l2, l3, l4 = depths
    return {"g_a": [1, l1, 1, l2, 1, l3, 1], "g_s": [1, l3, 1, l2, 1, l1, 1],
            "h_a": [1, l4, 1], "h_s": [1, l4, 1]}[name]


def _index_map(name: str, old: tuple[int, ...], new: tuple[int, ...]) -> dict[int, int]:
    """Old module index -> new one: each run keeps its trained modules first."""
    mapping, i_old, i_new = {}, 0, 0
    for n_old, n_new in zip(_segments(name, old), _segments(name, new)):
        for j in range(n_old):
            mapping[i_old + j] = i_new + j
        i_old, i_new = i_old + n_old, i_new + n_new
    return mapping


def can_grow(old: ModelConfig, new: ModelConfig) -> bool:
    """Same widths and channel groups, and no stage shallower."""
    same = (old.N, old.M, old.dims, old.groups) == (new.N, new.M, new.dims, new.groups)
    return same and all(a <= b for a, b in zip(old.depths, new.depths)) and old.depths != new.depths


def grow_state_dict(sd: Mapping[str, torch.Tensor], old: ModelConfig, new: ModelConfig,
                    num_rates: int = 0, seed: int = 0) -> dict[str, torch.Tensor]:
    """``sd`` (canonical, config ``old``) as a state dict of config ``new``: trained tensors
    moved to their new indices, new blocks randomly initialised (``seed``) with zero scales."""
    if not can_grow(old, new):
        raise ValueError(f"cannot grow depths {old.depths} into {new.depths} (widths and groups must match)")
    maps = {name: _index_map(name, old.depths, new.depths) for name in ("g_a", "g_s", "h_a", "h_s")}

    def moved(key: str) -> str:
        m = _STAGE_KEY.search(key)
        if not m:
            return key
        index = maps[m.group(2)][int(m.group(3))]
        return f"{key[:m.start()]}{m.group(1)}{m.group(2)}.{index}.{key[m.end():]}"

    torch.manual_seed(seed)
    grown = LALIC(**new.kwargs(), num_rates=num_rates).state_dict()
    placed = {moved(k): v for k, v in sd.items()}
    for key in grown:
        given = placed.get(key, placed.get(f"latent_codec.hyper.{key}"))  # h_a., h_s.: aliases
        if given is not None:
            grown[key] = given.to(grown[key].dtype).clone()
        elif key.endswith((".gamma1", ".gamma2")):
            grown[key] = torch.zeros_like(grown[key])
    return grown
