"""Growing trained LALIC weights into a deeper config, or a wider latent, without
changing what they code.

Capacity for the high-rate end without a restart from scratch.

- Depth: the trained blocks keep their places in each stage, and every new Bi-RWKV
  block enters after them with both residual scales (``gamma1``, ``gamma2``) at zero. A
  pre-norm residual block with zero scales is the identity; the scales get gradients at
  once, and the new blocks' weights train as soon as the scales move off zero (as in
  ReZero, Bachlechner et al., 2020).
- Latent width: new channel groups are appended to ``y``. ``g_a``'s new output rows
  start at zero, so the new channels are exactly zero and round to zero; ``g_s`` and
  ``h_a`` read them through randomly initialised weights, which therefore change
  nothing yet but pass the distortion's gradient back to ``g_a``'s new rows (a zero on
  both sides would be a saddle that never moves). The new group's entropy parameters
  start at zero: mean 0 and the smallest scale, where a zero costs almost no bits.
  Its gains start at each rate's geometric mean of the trained ones.

Either way the grown model decodes the same pixels as the trained one before its first
step (tests/test_grow.py).
"""

from __future__ import annotations

import re
from typing import Mapping

import torch

from ..families.lalic import ModelConfig
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
    """Same widths, no stage shallower, the old channel groups a prefix of the new ones,
    and something grown."""
    same = (old.N, old.dims) == (new.N, new.dims) and new.groups[:len(old.groups)] == old.groups
    deeper = all(a <= b for a, b in zip(old.depths, new.depths))
    return same and deeper and (old.depths, old.groups) != (new.depths, new.groups)


def _embed(trained: torch.Tensor, fresh: torch.Tensor) -> torch.Tensor:
    """``fresh`` with the trained tensor in its leading slice (a tensor of a wider latent)."""
    out = fresh.clone()
    out[tuple(slice(0, n) for n in trained.shape)] = trained.to(out.dtype)
    return out


def _widen_latent(grown: dict[str, torch.Tensor], old: ModelConfig) -> None:
    """The rules of the module docstring for the parts that a wider latent adds."""
    m = sum(old.groups)
    last_ga = max(int(k.split(".")[1]) for k in grown if k.startswith("g_a."))
    grown[f"g_a.{last_ga}.weight"][m:] = 0
    grown[f"g_a.{last_ga}.bias"][m:] = 0
    for key in ("gain", "inv_gain"):
        if key in grown:
            table = grown[key]
            table[:, m:] = table[:, :m].abs().log().mean(1, keepdim=True).exp()
    for k in range(len(old.groups), len(_group_names(grown))):
        prefix = f"latent_codec.y.latent_codec.y{k}.entropy_parameters."
        last = max(int(key[len(prefix):].split(".")[0]) for key in grown if key.startswith(prefix))
        grown[f"{prefix}{last}.mix.weight"].zero_()
        grown[f"{prefix}{last}.mix.bias"].zero_()


def _group_names(sd: Mapping[str, torch.Tensor]) -> list[str]:
    """Names of the channel groups whose coders a state dict holds (``y0``, ``y1`` ...)."""
    prefix = "latent_codec.y.latent_codec."
    return sorted({key[len(prefix):].split(".")[0] for key in sd if key.startswith(prefix)})


def grow_state_dict(sd: Mapping[str, torch.Tensor], old: ModelConfig, new: ModelConfig,
                    num_rates: int = 0, seed: int = 0) -> dict[str, torch.Tensor]:
    """``sd`` (canonical, config ``old``) as a state dict of config ``new``: trained tensors
    moved to their new indices, new blocks randomly initialised (``seed``) with zero scales."""
    if not can_grow(old, new):
        raise ValueError(f"cannot grow depths {old.depths} groups {old.groups} into depths {new.depths} "
                         f"groups {new.groups} (widths must match, and the old groups lead the new ones)")
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
        if given is not None and given.shape == grown[key].shape:
            grown[key] = given.to(grown[key].dtype).clone()
        elif given is not None:
            grown[key] = _embed(given, grown[key])
        elif key.endswith((".gamma1", ".gamma2")):
            grown[key] = torch.zeros_like(grown[key])
    if new.groups != old.groups:
        _widen_latent(grown, old)
    return grown
