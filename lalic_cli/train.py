"""Training both families: exact resume, DDP under torchrun, one recipe per family.

LALIC: the paper's rate-distortion objective. MRT: one-stage end-to-end training
(rate + MSE + MS-SSIM, spec MRT.md part B, "single-stage mode")."""

from __future__ import annotations

import math
import os
import random
import signal
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from PIL import Image

from .errors import InputError
from .fileio import atomic_write
from .models import LALIC, MRT, get_config
from .zoo.registry import save_weights

LAMBDAS = (0.0018, 0.0035, 0.0067, 0.0130, 0.0250, 0.0483)  # q1..q6, the official levels
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff", ".ppm"}


@dataclass
class TrainConfig:
    data: str
    out: str
    config: str = "lite"
    codec: str = "lalic"  # model family: "lalic" or "mrt"
    lmbda: float | None = None  # fixed-rate training when given
    variable_rate: bool = False
    steps: int = 10000
    batch: int = 8
    patch: int = 128
    lr: float = 1e-4
    aux_lr: float = 1e-3
    clip: float = 1.0
    lr_drop_at: float = 0.85  # fraction of steps after which lr is divided by 10
    checkpoint_every: int = 500
    val_data: str | None = None
    val_every: int = 500
    val_limit: int = 4
    device: str = "cpu"
    seed: int = 0
    init: str | None = None  # weights (safetensors/checkpoint) to start from; optimiser state fresh
    time_limit: float | None = None  # seconds; stop cleanly (checkpoint written) once exceeded


def list_images(folder: str | Path) -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: not a folder")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise InputError(f"{folder}: no images found")
    return files


class CropDataset:
    """All training images held in memory as uint8; random crops and flips on demand."""

    def __init__(self, folder: str | Path, patch: int):
        self.patch = patch
        self.images = []
        for p in list_images(folder):
            img = Image.open(p).convert("RGB")
            if min(img.size) < patch:
                scale = patch / min(img.size)
                img = img.resize((math.ceil(img.width * scale), math.ceil(img.height * scale)), Image.BICUBIC)
            self.images.append(torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1))

    def batch(self, n: int, gen: torch.Generator) -> torch.Tensor:
        out = []
        for _ in range(n):
            img = self.images[int(torch.randint(len(self.images), (1,), generator=gen))]
            h, w = img.shape[-2:]
            top = int(torch.randint(h - self.patch + 1, (1,), generator=gen))
            left = int(torch.randint(w - self.patch + 1, (1,), generator=gen))
            crop = img[:, top: top + self.patch, left: left + self.patch]
            if torch.rand((), generator=gen) < 0.5:
                crop = crop.flip(-1)
            if torch.rand((), generator=gen) < 0.5:
                crop = crop.flip(-2)
            out.append(crop)
        return torch.stack(out).float().div_(255.0)


def rd_loss(out: dict, x: torch.Tensor, lmbda: torch.Tensor) -> dict:
    """``lambda * 255^2 * MSE + bpp`` per image, averaged; lambda may differ per image."""
    n, _, h, w = x.shape
    bits = sum(
        (-torch.log2(l)).reshape(n, -1).sum(1) for l in out["likelihoods"].values()
    )
    bpp = bits / (h * w)
    mse = F.mse_loss(out["x_hat"], x, reduction="none").reshape(n, -1).mean(1)
    loss = (lmbda * 255**2 * mse + bpp).mean()
    psnr = 10 * torch.log10(1.0 / mse.detach().clamp_min(1e-10)).mean()
    return {"loss": loss, "bpp": bpp.mean(), "mse": mse.mean(), "psnr": psnr}


def mrt_loss(out: dict, x: torch.Tensor, ms_ssim_weight: float = 5.0) -> dict:
    """``0.01 * 255^2 * MSE + w * (1 - MS-SSIM) + bpp + 0.1 * LFQ penalty``.

    At these rates the token budget bounds the rate, so distortion leads; the bpp
    term trains the context model (its only gradient) and makes codes predictable."""
    from pytorch_msssim import ms_ssim

    n, _, h, w = x.shape
    bpp = (-torch.log2(out["likelihoods"])).reshape(n, -1).sum(1) / (h * w)
    mse = F.mse_loss(out["x_hat"], x, reduction="none").reshape(n, -1).mean(1)
    similarity = ms_ssim(out["x_hat"].clamp(0, 1), x, data_range=1.0, size_average=False)
    loss = (0.01 * 255**2 * mse + ms_ssim_weight * (1 - similarity) + bpp).mean() + 0.1 * out["lfq_loss"]
    psnr = 10 * torch.log10(1.0 / mse.detach().clamp_min(1e-10)).mean()
    return {"loss": loss, "bpp": bpp.mean(), "mse": mse.mean(), "psnr": psnr, "ms_ssim": similarity.mean()}


class LalicRecipe:
    """LALIC: lambda * 255^2 * MSE + bpp; variable rate draws one of the six lambdas per image."""

    multiple = 64
    unused_parameters = False

    def __init__(self, cfg: TrainConfig):
        self.cfg = cfg
        if not cfg.variable_rate and cfg.lmbda is None:
            raise InputError("give --lambda L (fixed rate) or --variable-rate")

    def build(self) -> torch.nn.Module:
        return LALIC(**get_config(self.cfg.config).kwargs(), num_rates=len(LAMBDAS) if self.cfg.variable_rate else 0)

    def sample(self, n: int, gen: torch.Generator) -> tuple[torch.Tensor | None, torch.Tensor]:
        """``(quality per image or None, lambda per image)``."""
        if not self.cfg.variable_rate:
            return None, torch.full((n,), self.cfg.lmbda)
        idx = torch.randint(len(LAMBDAS), (n,), generator=gen)
        return (idx + 1).float(), torch.tensor(LAMBDAS)[idx]

    def loss(self, out: dict, x: torch.Tensor, lmbda: torch.Tensor) -> dict:
        return rd_loss(out, x, lmbda.to(x.device))

    def validation(self) -> tuple[float | None, torch.Tensor]:
        lmbda = self.cfg.lmbda if self.cfg.lmbda is not None else LAMBDAS[2]
        return (None if not self.cfg.variable_rate else 3.0), torch.tensor([lmbda])


class MrtRecipe:
    """MRT: rate + MSE + MS-SSIM; each image draws one of the model's rates (bits per token)."""

    multiple = 256
    unused_parameters = True  # a batch at low rates leaves the later bit groups' context networks idle

    def __init__(self, cfg: TrainConfig):
        self.cfg = cfg
        if cfg.patch % self.multiple:
            raise InputError(f"MRT trains on whole {self.multiple}-pixel windows: --patch must be a multiple of it")
        self.rates = len(get_config(cfg.config).bits)

    def build(self) -> torch.nn.Module:
        return MRT(**get_config(self.cfg.config).kwargs())

    def sample(self, n: int, gen: torch.Generator) -> tuple[torch.Tensor, None]:
        return torch.randint(self.rates, (n,), generator=gen) + 1, None

    def loss(self, out: dict, x: torch.Tensor, _weights) -> dict:
        return mrt_loss(out, x)

    def validation(self) -> tuple[float, None]:
        return float(self.rates), None


RECIPES = {"lalic": LalicRecipe, "mrt": MrtRecipe}


def build_optimizers(model: torch.nn.Module, cfg: TrainConfig):
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    aux = [p for n, p in params.items() if n.endswith(".quantiles")]
    main = [p for n, p in params.items() if not n.endswith(".quantiles")]
    return torch.optim.Adam(main, lr=cfg.lr), (torch.optim.Adam(aux, lr=cfg.aux_lr) if aux else None)


def _rng_state() -> dict:
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])


class Trainer:
    """One training run; ``run`` can be interrupted and resumed exactly."""

    def __init__(self, cfg: TrainConfig, resume: str | None = None, progress=None, model: torch.nn.Module | None = None):
        self.cfg = cfg
        self.out = Path(cfg.out)
        self.rank = int(os.environ.get("RANK", 0))
        self.world = int(os.environ.get("WORLD_SIZE", 1))
        if self.world > 1 and not dist.is_initialized():
            dist.init_process_group("nccl" if cfg.device == "cuda" else "gloo")
        if cfg.device == "cuda":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
        self.device = torch.device(cfg.device, torch.cuda.current_device()) if cfg.device == "cuda" else torch.device("cpu")
        if cfg.codec not in RECIPES:
            raise InputError(f"unknown codec {cfg.codec!r} ({', '.join(RECIPES)})")
        family = get_config(cfg.config).family
        if family != cfg.codec:
            raise InputError(f"config {cfg.config!r} is a {family} config, not {cfg.codec}")
        self.recipe = RECIPES[cfg.codec](cfg)
        torch.manual_seed(cfg.seed)
        if cfg.device == "cuda":  # TF32 GEMMs: about 3x the fp32 rate, well inside training noise
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        self.model = model if model is not None else self.recipe.build()
        if cfg.init and not resume:
            self._init_from(cfg.init)
        self.model.to(self.device).train()
        self.net = self.model
        if self.world > 1:
            self.net = torch.nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if cfg.device == "cuda" else None,
                find_unused_parameters=self.recipe.unused_parameters,
            )
        self.opt, self.aux_opt = build_optimizers(self.model, cfg)
        self.step = 0
        self.skipped = 0  # updates skipped for a non-finite gradient
        self.data = CropDataset(cfg.data, cfg.patch)
        self.gen = torch.Generator().manual_seed(cfg.seed * 1000 + self.rank)
        self.progress = progress
        if resume:
            self.load(resume)

    # -- state -------------------------------------------------------------------------
    def state(self) -> dict:
        return {
            "model": self.model.state_dict(),
            "opt": self.opt.state_dict(),
            "aux_opt": self.aux_opt.state_dict() if self.aux_opt else None,
            "step": self.step,
            "gen": self.gen.get_state(),
            "rng": _rng_state(),
            "config": asdict(self.cfg),
        }

    def load(self, path: str) -> None:
        st = torch.load(path, map_location=self.device, weights_only=False)
        self.model.load_state_dict(st["model"])
        self.opt.load_state_dict(st["opt"])
        if self.aux_opt:
            self.aux_opt.load_state_dict(st["aux_opt"])
        self.step = st["step"]
        self.gen.set_state(st["gen"])
        _set_rng_state(st["rng"])

    def _init_from(self, path: str) -> None:
        """Parameters only: buffers (coder tables, the likelihood lower bound) stay the model's
        own. An fp16 export stores the 1e-9 lower bound as 0, and a likelihood of 0 is an
        infinite rate."""
        from .zoo.checkpoint import canonical, load_checkpoint_file

        sd = canonical(load_checkpoint_file(path))
        params = canonical(dict(self.model.named_parameters()))  # folded copies are derived
        missing = sorted(set(params) - set(sd))
        if missing:
            raise InputError(f"{path}: no values for {len(missing)} parameters, e.g. {missing[0]}")
        with torch.no_grad():
            for k, p in params.items():
                if sd[k].shape != p.shape:
                    raise InputError(f"{path}: {k} has shape {tuple(sd[k].shape)}, the model {tuple(p.shape)}")
                p.copy_(sd[k].to(p.dtype))

    def save_checkpoint(self) -> Path | None:
        if self.rank != 0:
            return None
        self.out.mkdir(parents=True, exist_ok=True)
        dest = self.out / "checkpoint.pt"
        atomic_write(dest, lambda p: torch.save(self.state(), p), force=True)
        return dest

    def export_weights(self, name: str, dtype=torch.float32) -> Path:
        """The trained model as canonical safetensors with coder-independent metadata."""
        dest = self.out / f"{name}.safetensors"
        variable = self.cfg.variable_rate or self.cfg.codec == "mrt"
        meta = {"config": self.cfg.config, "family": self.cfg.codec, "quality": "variable" if variable else "",
                "lambda": "" if self.cfg.lmbda is None else str(self.cfg.lmbda), "steps": str(self.step)}
        save_weights(self.model.state_dict(), dest, meta, dtype=dtype)
        return dest

    # -- loop --------------------------------------------------------------------------
    def _set_lr(self) -> None:
        lr = self.cfg.lr * (0.1 if self.step >= self.cfg.lr_drop_at * self.cfg.steps else 1.0)
        for g in self.opt.param_groups:
            g["lr"] = lr

    def train_step(self) -> dict:
        x = self.data.batch(self.cfg.batch, self.gen).to(self.device)
        quality, weights = self.recipe.sample(x.shape[0], self.gen)
        self._set_lr()
        self.opt.zero_grad(set_to_none=True)
        out = self.net(x) if quality is None else self.net(x, quality.to(self.device))
        metrics = self.recipe.loss(out, x, weights)
        metrics["loss"].backward()
        norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.clip)
        if torch.isfinite(norm):
            self.opt.step()
        else:  # one bad batch must not poison the weights: skip the update, count it
            self.skipped += 1
        if self.aux_opt is None:  # MRT has no factorized prior to fit
            self.step += 1
            return {k: float(v.detach()) for k, v in metrics.items()} | {"skipped": self.skipped}
        self.aux_opt.zero_grad(set_to_none=True)  # drop what the R-D loss left on the quantiles
        aux = self.model.aux_loss()
        aux.backward()
        if self.world > 1:  # the aux loss runs outside DDP's forward, so average by hand
            for group in self.aux_opt.param_groups:
                for p in group["params"]:
                    dist.all_reduce(p.grad)
                    p.grad /= self.world
        self.aux_opt.step()
        self.step += 1
        return {k: float(v.detach()) for k, v in metrics.items()} | {"aux": float(aux.detach()), "skipped": self.skipped}

    @torch.no_grad()
    def validate(self) -> dict | None:
        if not self.cfg.val_data:
            return None
        self.model.eval()
        q, lmbda = self.recipe.validation()
        m = self.recipe.multiple
        rows = []
        for p in list_images(self.cfg.val_data)[: self.cfg.val_limit]:
            img = torch.from_numpy(np.asarray(Image.open(p).convert("RGB")).copy()).permute(2, 0, 1)
            x = img[None].float().div(255).to(self.device)
            h, w = x.shape[-2:]
            x = x[..., : h - h % m, : w - w % m]
            out = self.model(x) if q is None else self.model(x, q)
            rows.append(self.recipe.loss(out, x, lmbda))
        self.model.train()
        return {k: float(sum(float(r[k]) for r in rows) / len(rows)) for k in ("loss", "bpp", "psnr")}

    def run(self, on_step=None) -> None:
        """Train to ``cfg.steps``; checkpoints periodically and on exit, Ctrl-C included."""
        stop = {"flag": False}

        def request_stop(*_):
            stop["flag"] = True

        previous = signal.signal(signal.SIGTERM, request_stop) if self.rank == 0 else None
        t0, s0 = time.perf_counter(), self.step
        try:
            while self.step < self.cfg.steps and not stop["flag"]:
                if self.cfg.time_limit is not None and time.perf_counter() - t0 > self.cfg.time_limit:
                    break
                m = self.train_step()
                m["steps_per_s"] = (self.step - s0) / (time.perf_counter() - t0)
                if self.step % self.cfg.val_every == 0:
                    val = self.validate()
                    if val:
                        m.update({f"val_{k}": v for k, v in val.items()})
                if on_step:
                    on_step(self.step, m)
                if self.step % self.cfg.checkpoint_every == 0:
                    self.save_checkpoint()
        finally:
            self.save_checkpoint()
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)
