"""The one in-memory cache of portable copies (the latent codec, the MRT bit-context
networks), kept per model object and forgotten when its weights change.

A copy is built from the float weights, so it is valid only until they change. The
cache does not compare tensors to find out: it forgets a model's copies, and the
fingerprint its loader recorded (the key of the on-disk coder tables), on the events
that change weights:

- ``load_state_dict`` into the model or into any part of it: a post-hook is registered
  on each of its modules when the model's first copy or fingerprint is recorded;
- an optimizer step over any of the model's parameters: a process-wide step hook. An
  optimizer over other tensors (the latents of ``--effort`` 8 and 9) forgets nothing.

Anything else that writes weights in place (``AveragedModel.update_parameters``, a
hand-written update under ``no_grad``, ``.half()``) must call :func:`forget`.

Why events and not a stamp of the tensors (their version counters and addresses, tried
first): a stamp moves for writes that leave the model's weights as they were, and
misses some that do not. A version counter belongs to a tensor, and models can share
tensors: models built from one state dict with ``assign=True`` share its float32
buffers (the likelihood lower bounds), so loading weights into one model moved the
other's stamp. CompressAI's masked convolutions re-mask their weights in place at every
forward and OmniShift refolds its kernels at every ``eval()``, so the stamp had to know
which tensors count; and tensors made under ``inference_mode`` keep no counter at all.
"""

from __future__ import annotations

import weakref
from typing import Callable, Hashable, TypeVar

import torch
import torch.nn as nn
from torch.optim.optimizer import register_optimizer_step_post_hook

__all__ = ["cached_copy", "fingerprint_of", "forget", "note_fingerprint"]

T = TypeVar("T")

_copies: "weakref.WeakKeyDictionary[nn.Module, dict[Hashable, object]]" = weakref.WeakKeyDictionary()
_fingerprints: "weakref.WeakKeyDictionary[nn.Module, str]" = weakref.WeakKeyDictionary()
# each module of a model with a copy or a fingerprint -> those models
_owners: "weakref.WeakKeyDictionary[nn.Module, weakref.WeakSet[nn.Module]]" = weakref.WeakKeyDictionary()


def cached_copy(model: nn.Module, kind: Hashable, build: Callable[[], T]) -> T:
    """``build()``'s copy of ``model``, kept until its weights change."""
    entries = _copies.get(model)
    if entries is not None and kind in entries:
        return entries[kind]
    copy = build()
    _watch(model)
    _copies.setdefault(model, {})[kind] = copy
    return copy


def note_fingerprint(model: nn.Module, fingerprint: str) -> None:
    """Record the fingerprint of the model's weights as they are now."""
    _watch(model)
    _fingerprints[model] = fingerprint


def fingerprint_of(model: nn.Module) -> str | None:
    """The recorded fingerprint if the weights have not changed since, else None."""
    return _fingerprints.get(model)


def forget(model: nn.Module) -> None:
    """Drop the model's copies and fingerprint: its weights have changed."""
    _copies.pop(model, None)
    _fingerprints.pop(model, None)


def _watch(model: nn.Module) -> None:
    for module in model.modules():
        owners = _owners.get(module)
        if owners is None:
            owners = _owners[module] = weakref.WeakSet()
            module.register_load_state_dict_post_hook(_loaded)
        owners.add(model)


def _loaded(module: nn.Module, _incompatible_keys) -> None:
    for model in list(_owners.get(module, ())):
        forget(model)


def _stepped(optimizer: torch.optim.Optimizer, _args, _kwargs) -> None:
    models = set(_copies.keys()) | set(_fingerprints.keys())
    if not models:
        return
    stepped = {id(p) for group in optimizer.param_groups for p in group["params"]}
    for model in models:
        if any(id(p) in stepped for p in model.parameters()):
            forget(model)


register_optimizer_step_post_hook(_stepped)
