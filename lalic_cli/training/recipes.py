"""One recipe per (family, stage): the model, its loss, the rates it draws, what is exported.

Each family's recipes live in the module its descriptor names (``Family.recipes_module``:
``lalic_recipes``, ``mrt_recipes``) and register there under the ``--codec`` and
``--stage`` that select them; ``recipe_for`` imports that module and looks the recipe up."""

from __future__ import annotations

from importlib import import_module

import torch

from ..errors import InputError
from ..families import get_family
from .config import TrainConfig

#: (codec, stage) -> recipe, in the order the recipes register
RECIPES: dict[tuple[str, str], type[Recipe]] = {}


def register(codec: str, stage: str):
    """Class decorator: the recipe that ``--codec codec --stage stage`` trains."""
    def add(recipe: type[Recipe]) -> type[Recipe]:
        RECIPES[codec, stage] = recipe
        return recipe
    return add


def recipe_for(codec: str, stage: str = "2") -> type[Recipe]:
    """The recipe of a family's stage; its family's recipes are imported (registered) first."""
    family = get_family(codec)
    if family.recipes_module:
        import_module(family.recipes_module)
    try:
        return RECIPES[codec, stage]
    except KeyError:
        stages = [s for c, s in RECIPES if c == codec]
        raise InputError(f"{codec} has no stage {stage!r} (stages: {', '.join(stages)})") from None


class Recipe:
    """One way of training: the model, its loss, the rates it draws, what is exported.

    ``options`` names the ``TrainConfig`` options that only some recipes take; giving
    one to another recipe is an error rather than silently ignored."""

    family: str  # the config family it trains
    default_config: str
    default_patch: int
    multiple = 1  # crop sides must be a multiple of this
    always_variable = False  # its exports code every quality, whatever --variable-rate says
    transforms: tuple[str, ...] = ()  # the modules --precision bf16 runs under autocast
    unused_parameters = False  # for DDP
    options: tuple[str, ...] = ()
    #: metrics on the progress line, with their formats
    shown: tuple[tuple[str, str], ...] = (("loss", ".3f"), ("bpp", ".3f"), ("psnr", ".2f"))

    def __init__(self, cfg: TrainConfig):
        self.cfg = cfg
        for option in ("tokenizer", "perceptual_weights", "rate_weights"):
            if getattr(cfg, option) and option not in self.options:
                raise InputError(f"--{option.replace('_', '-')} does not apply to {cfg.codec} stage {cfg.stage}")

    def _whole(self, what: str, unit: str) -> None:
        if self.cfg.patch % self.multiple:
            raise InputError(f"{what} trains on whole {self.multiple}-pixel {unit}: --patch must be a multiple of it")

    def inference(self, model: torch.nn.Module) -> torch.nn.Module:
        """The part of the trained model that is exported and that ``--init`` loads."""
        return model

    def top_validation(self) -> list[tuple[float, torch.Tensor | None]]:
        """Further ``(quality, weights)`` points that validation reports, keyed ``_q<quality>``."""
        return []

    def grown(self, sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """``--init`` weights of another config, made to fit this run's where the family knows how."""
        return sd
