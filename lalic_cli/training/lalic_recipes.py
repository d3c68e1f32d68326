"""LALIC's training recipe: the paper's rate-distortion objective, fixed or variable rate;
``--init`` weights of a shallower or narrower-latent LALIC config are grown into the run's."""

from __future__ import annotations

import math

import torch

from ..errors import InputError
from ..families.lalic import KEY
from ..models import LALIC, get_config
from ..models.rates import LAMBDAS
from .config import TrainConfig
from .losses import rd_loss
from .recipes import Recipe, register


@register(KEY, "2")
class LalicRecipe(Recipe):
    """LALIC: lambda * 255^2 * MSE + bpp; variable rate draws one of ``LAMBDAS`` per image."""

    family, default_config, default_patch = KEY, "lite", 128
    multiple = 64
    transforms = ("g_a", "g_s")  # the entropy model stays float32: its likelihoods need the range
    options = ("rate_weights",)

    def __init__(self, cfg: TrainConfig):
        super().__init__(cfg)
        if not cfg.variable_rate and cfg.lmbda is None:
            raise InputError("give --lambda L (fixed rate) or --variable-rate")
        self.rate_weights = None
        if cfg.rate_weights is not None:
            w = tuple(float(v) for v in cfg.rate_weights)
            if not cfg.variable_rate:
                raise InputError("--rate-weights needs --variable-rate")
            if len(w) != len(LAMBDAS) or min(w) < 0 or not sum(w) > 0 or not all(math.isfinite(v) for v in w):
                raise InputError(f"--rate-weights takes {len(LAMBDAS)} weights >= 0 (q1..q{len(LAMBDAS)}), not {cfg.rate_weights}")
            self.rate_weights = torch.tensor(w, dtype=torch.float64)

    def build(self) -> torch.nn.Module:
        return LALIC(**get_config(self.cfg.config).kwargs(), num_rates=len(LAMBDAS) if self.cfg.variable_rate else 0)

    def sample(self, n: int, gen: torch.Generator) -> tuple[torch.Tensor | None, torch.Tensor]:
        """``(quality per image or None, lambda per image)``."""
        if not self.cfg.variable_rate:
            return None, torch.full((n,), self.cfg.lmbda)
        if self.rate_weights is None:
            idx = torch.randint(len(LAMBDAS), (n,), generator=gen)
        else:  # drawn more often, a rate trains faster (the others' share shrinks)
            idx = torch.multinomial(self.rate_weights, n, replacement=True, generator=gen)
        return (idx + 1).float(), torch.tensor(LAMBDAS)[idx]

    def loss(self, out: dict, x: torch.Tensor, lmbda: torch.Tensor) -> dict:
        return rd_loss(out, x, lmbda.to(x.device))

    def validation(self) -> tuple[float | None, torch.Tensor]:
        lmbda = self.cfg.lmbda if self.cfg.lmbda is not None else LAMBDAS[2]
        return (None if not self.cfg.variable_rate else 3.0), torch.tensor([lmbda])

    def top_validation(self) -> list[tuple[float, torch.Tensor]]:
        """Variable rate: the top quality too, where the transforms' fidelity shows first."""
        return [(float(len(LAMBDAS)), torch.tensor([LAMBDAS[-1]]))] if self.cfg.variable_rate else []

    def grown(self, sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Weights of a shallower LALIC config, grown into this run's (models/grow.py);
        any other weights as they are."""
        from ..models.grow import can_grow, grow_state_dict
        from ..zoo.checkpoint import CheckpointError, canonical, detect_config, num_rates

        try:
            have = get_config(detect_config(sd))
        except CheckpointError:
            return sd  # the trainer's parameter check names what does not fit
        want = get_config(self.cfg.config)
        if have.family != self.family or want.family != self.family or not can_grow(have, want):
            return sd
        return canonical(grow_state_dict(sd, have, want, num_rates=num_rates(sd), seed=self.cfg.seed))
