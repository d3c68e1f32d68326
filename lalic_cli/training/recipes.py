"""One recipe per (family, stage): the model, its loss, the rates it draws, what is exported.

Each recipe registers itself under the ``--codec`` and ``--stage`` that select it;
``recipe_for`` looks it up. LALIC: the paper's rate-distortion objective. MRT (spec
MRT.md B.6): stage 2 is end to end (rate + MSE + MS-SSIM, optionally an LPIPS-style
term), from scratch or from stage 1; stage 1 first trains a VQ tokenizer
("tokenizer"), then aligns MRT's codes with its codes ("1")."""

from __future__ import annotations

import math
from pathlib import Path

import torch

from ..errors import InputError
from ..models import LALIC, MRT, VQTokenizer, get_config
from ..models.rates import LAMBDAS
from .config import TrainConfig
from .losses import align_loss, mrt_loss, rd_loss, tokenizer_loss
from .mrt_align import MrtAligner
from .perceptual import load_perceptual

#: (codec, stage) -> recipe, in the order the recipes register
RECIPES: dict[tuple[str, str], type[Recipe]] = {}


def register(codec: str, stage: str):
    """Class decorator: the recipe that ``--codec codec --stage stage`` trains."""
    def add(recipe: type[Recipe]) -> type[Recipe]:
        RECIPES[codec, stage] = recipe
        return recipe
    return add


def recipe_for(codec: str, stage: str = "2") -> type[Recipe]:
    try:
        return RECIPES[codec, stage]
    except KeyError:
        stages = [s for c, s in RECIPES if c == codec]
        if not stages:
            raise InputError(f"unknown codec {codec!r} ({', '.join(sorted({c for c, _ in RECIPES}))})") from None
        raise InputError(f"{codec} has no stage {stage!r} (stages: {', '.join(stages)})") from None


class Recipe:
    """One way of training: the model, its loss, the rates it draws, what is exported.

    ``options`` names the ``TrainConfig`` options that only some recipes take; giving
    one to another recipe is an error rather than silently ignored."""

    family: str  # the config family it trains
    default_config: str
    default_patch: int
    multiple = 1  # crop sides must be a multiple of this
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


@register("lalic", "2")
class LalicRecipe(Recipe):
    """LALIC: lambda * 255^2 * MSE + bpp; variable rate draws one of ``LAMBDAS`` per image."""

    family, default_config, default_patch = "lalic", "lite", 128
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


@register("mrt", "2")
class MrtRecipe(Recipe):
    """MRT stage 2, end to end: rate + MSE + MS-SSIM (+ the perceptual term); each image
    draws one of the model's rates (bits per token)."""

    family, default_config, default_patch = "mrt", "mrt-small", 256
    multiple = 256
    unused_parameters = True  # a batch at low rates leaves the later bit groups' context networks idle
    options = ("perceptual_weights",)

    def __init__(self, cfg: TrainConfig):
        super().__init__(cfg)
        self._whole("MRT", "windows")
        self.rates = len(get_config(cfg.config).bits)
        self.perceptual = load_perceptual(cfg.perceptual_weights) if cfg.perceptual_weights else None

    def build(self) -> torch.nn.Module:
        return MRT(**get_config(self.cfg.config).kwargs())

    def sample(self, n: int, gen: torch.Generator) -> tuple[torch.Tensor, None]:
        return torch.randint(self.rates, (n,), generator=gen) + 1, None

    def loss(self, out: dict, x: torch.Tensor, _weights) -> dict:
        return mrt_loss(out, x, perceptual=self.perceptual, perceptual_weight=self.cfg.perceptual_weight)

    def validation(self) -> tuple[float, None]:
        return float(self.rates), None


@register("mrt", "1")
class MrtAlignRecipe(MrtRecipe):
    """MRT stage 1 proper: predict the tokenizer's code of each patch (cross-entropy) + rate.

    The generator starts as the tokenizer's decoder and is not trained here."""

    options = ("tokenizer",)
    shown = (("loss", ".3f"), ("ce", ".3f"), ("acc", ".3f"), ("bpp", ".4f"))

    def __init__(self, cfg: TrainConfig):
        super().__init__(cfg)
        if not cfg.tokenizer:
            raise InputError("stage 1 needs --tokenizer FILE: the weights that --stage tokenizer exported")
        self.tokenizer = self._load_tokenizer(Path(cfg.tokenizer))

    @staticmethod
    def _load_tokenizer(path: Path) -> VQTokenizer:
        """Before the trainer seeds the model's initialisation: recognising the file builds
        models of other configs once (cached), which would shift the random numbers."""
        from ..zoo.checkpoint import build_model, load_checkpoint_file

        if not path.is_file():
            raise InputError(f"{path}: no such file (tokenizer weights)")
        tokenizer = build_model(load_checkpoint_file(path))
        if not isinstance(tokenizer, VQTokenizer):
            raise InputError(f"{path}: not tokenizer weights (config {tokenizer.config_name})")
        return tokenizer

    def build(self) -> torch.nn.Module:
        try:
            return MrtAligner(super().build(), self.tokenizer)
        except ValueError as e:
            raise InputError(f"{self.cfg.tokenizer} ({self.tokenizer.config_name}) does not fit "
                             f"{self.cfg.config}: {e}") from None

    def loss(self, out: dict, x: torch.Tensor, _weights) -> dict:
        return align_loss(out, x)

    def inference(self, model: torch.nn.Module) -> torch.nn.Module:
        return model.mrt


@register("mrt", "tokenizer")
class MrtTokenizerRecipe(Recipe):
    """MRT stage 1, first step: the VQ tokenizer whose codes are stage 1's targets."""

    family, default_config, default_patch = "vq", "vq-small", 256
    multiple = 16
    shown = (("loss", ".3f"), ("psnr", ".2f"), ("codes", ".0f"))

    def __init__(self, cfg: TrainConfig):
        super().__init__(cfg)
        self._whole("The tokenizer", "patches")

    def build(self) -> torch.nn.Module:
        return VQTokenizer(**get_config(self.cfg.config).kwargs())

    def sample(self, n: int, gen: torch.Generator) -> tuple[None, None]:
        return None, None

    def loss(self, out: dict, x: torch.Tensor, _weights) -> dict:
        return tokenizer_loss(out, x, get_config(self.cfg.config).codes)

    def validation(self) -> tuple[None, None]:
        return None, None
