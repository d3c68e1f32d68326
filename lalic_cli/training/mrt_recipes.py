"""MRT's training recipes (spec MRT.md B.6): stage 2 is end to end (rate + MSE + MS-SSIM,
optionally an LPIPS-style term), from scratch or from stage 1; stage 1 first trains a VQ
tokenizer ("tokenizer"), then aligns MRT's codes with its codes ("1")."""

from __future__ import annotations

from pathlib import Path

import torch

from ..errors import InputError
from ..families.mrt import KEY, VqConfig
from ..models import MRT, VQTokenizer, get_config
from .config import TrainConfig
from .losses import align_loss, mrt_loss, tokenizer_loss
from .mrt_align import MrtAligner
from .perceptual import load_perceptual
from .recipes import Recipe, register


@register(KEY, "2")
class MrtRecipe(Recipe):
    """MRT stage 2, end to end: rate + MSE + MS-SSIM (+ the perceptual term); each image
    draws one of the model's rates (bits per token)."""

    family, default_config, default_patch = KEY, "mrt-small", 256
    multiple = 256
    always_variable = True  # one model codes every rate (its bit budgets)
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


@register(KEY, "1")
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


@register(KEY, "tokenizer")
class MrtTokenizerRecipe(Recipe):
    """MRT stage 1, first step: the VQ tokenizer whose codes are stage 1's targets."""

    family, default_config, default_patch = VqConfig.family, "vq-small", 256
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
