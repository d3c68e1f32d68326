"""Training both families: exact resume, DDP under torchrun, one recipe per (family, stage).

- ``config``: ``TrainConfig``, a run's options
- ``data``: ``CropDataset``, the training images in memory, random crops
- ``losses``: ``rd_loss`` (LALIC), ``mrt_loss``, ``tokenizer_loss``, ``align_loss`` (MRT's stages)
- ``perceptual``: the LPIPS-style distance ``mrt_loss`` may add
- ``mrt_align``: ``MrtAligner``, the model MRT's stage 1 trains (a training tool only)
- ``recipes``: ``Recipe``, the registry of one subclass per ``--codec``/``--stage``; ``recipe_for``
- ``lalic_recipes``, ``mrt_recipes``: each family's recipes (its descriptor names the module)
- ``trainer``: ``Trainer``, the loop, checkpoints and exports

The VQ tokenizer stays in ``models/``: weights files are recognised and built through
the configuration registry (``families.CONFIGS``), and a tokenizer file must be recognised
to be refused as a codec or loaded for stage 1.
"""

from ..models.rates import LAMBDAS
from .config import TrainConfig
from .data import CropDataset
from .losses import align_loss, mrt_loss, rd_loss, tokenizer_loss
from .mrt_align import MrtAligner
from .perceptual import Perceptual, load_perceptual, vgg16_features
from .lalic_recipes import LalicRecipe
from .mrt_recipes import MrtAlignRecipe, MrtRecipe, MrtTokenizerRecipe
from .recipes import RECIPES, Recipe, recipe_for, register
from .trainer import PRECISIONS, Trainer, autocast_in_training, build_optimizers, extend_rates

__all__ = [
    "LAMBDAS", "PRECISIONS", "RECIPES", "CropDataset", "LalicRecipe", "MrtAlignRecipe", "MrtAligner", "MrtRecipe",
    "MrtTokenizerRecipe", "Perceptual", "Recipe", "TrainConfig", "Trainer", "align_loss", "autocast_in_training",
    "build_optimizers", "extend_rates", "load_perceptual", "mrt_loss", "rd_loss", "recipe_for", "register",
    "tokenizer_loss", "vgg16_features",
]
