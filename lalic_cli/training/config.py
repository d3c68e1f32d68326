"""The options of one training run (``lalic train``'s flags): saved in every checkpoint
as ``asdict(config)``, so a checkpoint holds plain values, never this class."""

from __future__ import annotations

from dataclasses import dataclass

from ..families import DEFAULT_FAMILY


@dataclass
class TrainConfig:
    data: str
    out: str
    config: str = "lite"
    codec: str = DEFAULT_FAMILY  # model family (families.FAMILIES key)
    lmbda: float | None = None  # fixed-rate training when given
    variable_rate: bool = False
    rate_weights: tuple[float, ...] | None = None  # variable rate: how often each quality is drawn
    steps: int = 10000
    batch: int = 8
    patch: int = 128
    lr: float = 1e-4
    aux_lr: float = 1e-3
    clip: float = 1.0
    lr_drop_at: float = 0.85  # fraction of steps after which lr is divided by 10
    warmup: int = 0  # steps of linear lr ramp: a fresh Adam's first updates move every weight by ~lr
    checkpoint_every: int = 500
    val_data: str | None = None
    val_every: int = 500
    val_limit: int = 4
    device: str = "cpu"
    seed: int = 0
    init: str | None = None  # weights (safetensors/checkpoint) to start from; optimiser state fresh
    time_limit: float | None = None  # seconds; stop cleanly (checkpoint written) once exceeded
    stage: str = "2"  # MRT: "tokenizer", "1" (align with the tokenizer's codes) or "2" (end to end)
    tokenizer: str | None = None  # stage 1: the tokenizer's weights
    perceptual_weights: str | None = None  # stage 2: a torchvision VGG16 state dict
    perceptual_weight: float = 1.0
    ema: float = 0.0  # decay of an exponential moving average of the weights (0: none); exports use it
    precision: str = "float32"  # "bf16": the analysis/synthesis transforms under bf16 autocast while training
