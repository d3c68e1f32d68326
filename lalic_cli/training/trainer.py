"""The training loop: exact resume, DDP under torchrun, the recipe of ``cfg.codec`` and ``cfg.stage``.

A checkpoint (``checkpoint.pt``) is a dict of tensors, optimiser state dicts, RNG
states and ``asdict(cfg)``: builtins and tensors only, no class of this package, so
checkpoints load whatever module path the trainer lives at."""

from __future__ import annotations

import os
import random
import signal
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from PIL import Image

from ..errors import InputError
from ..fileio import atomic_write
from ..imagefiles import list_images
from ..models import get_config
from ..zoo.registry import save_weights
from .config import TrainConfig
from .data import CropDataset
from .recipes import recipe_for


PRECISIONS = {"float32": None, "bf16": torch.bfloat16}


def autocast_in_training(module: torch.nn.Module, dtype: torch.dtype) -> None:
    """Run ``module`` under autocast while it trains and hand float32 on: the cheaper
    arithmetic of AVX-512-BF16, AMX or a GPU. In eval mode or without gradients
    (validation, export, the memory-saving inference path) it runs in float32 as before,
    so validation stays comparable with float32 runs."""
    forward = module.forward

    def run(*args, **kwargs):
        if not (module.training and torch.is_grad_enabled()):
            return forward(*args, **kwargs)
        device = next(a for a in args if isinstance(a, torch.Tensor)).device.type
        with torch.autocast(device, dtype=dtype):
            y = forward(*args, **kwargs)
        return y.float()

    module.forward = run


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


def extend_rates(table: torch.Tensor, rates: int) -> torch.Tensor:
    """A gain table (rates x M) with rows added above its top quality, each one step of
    the top two rows' geometric ratio further: weights trained on q1..q6 start q7 and q8
    where they extrapolate, and keep their own q1..q6 exactly."""
    have = table.shape[0]
    if have >= rates:
        return table[:rates]
    if have < 2:
        raise InputError(f"cannot extend a gain table of {have} rate(s) to {rates}")
    t = table.float().abs().clamp_min(1e-6)
    ratio = t[-1] / t[-2]
    extra = [t[-1] * ratio ** k for k in range(1, rates - have + 1)]
    return torch.cat([table.float(), torch.stack(extra)]).to(table.dtype)


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
        recipe = recipe_for(cfg.codec, cfg.stage)
        family = get_config(cfg.config).family if model is None else recipe.family  # a given model: its own
        if family != recipe.family:
            raise InputError(f"config {cfg.config!r} is a {family} config, not {recipe.family}")
        self.recipe = recipe(cfg)
        torch.manual_seed(cfg.seed)
        if cfg.device == "cuda":  # TF32 GEMMs: about 3x the fp32 rate, well inside training noise
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        self.model = model if model is not None else self.recipe.build()
        if cfg.precision not in PRECISIONS:
            raise InputError(f"--precision takes {', '.join(PRECISIONS)}, not {cfg.precision!r}")
        if PRECISIONS[cfg.precision] is not None:
            if not self.recipe.transforms:
                raise InputError(f"--precision {cfg.precision} applies to LALIC only")
            for name in self.recipe.transforms:
                autocast_in_training(getattr(self.model, name), PRECISIONS[cfg.precision])
        self.steps_before = 0  # steps the weights had before this run (--init's metadata)
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
        if not 0 <= cfg.ema < 1:
            raise InputError(f"--ema takes a decay in [0, 1), not {cfg.ema}")
        # PyTorch's own EMA: parameters only; the coder tables are derived at export
        self.ema = AveragedModel(self.model, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema), use_buffers=False) \
            if cfg.ema else None
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
            "ema": self.ema.state_dict() if self.ema else None,
            "step": self.step,
            "steps_before": self.steps_before,
            "gen": self.gen.get_state(),
            "rng": _rng_state(),
            "config": asdict(self.cfg),
        }

    def _rank_states(self) -> list[dict] | None:
        """Every rank's crop generator and RNG states (a collective: all ranks call it);
        without them a resumed DDP run would give every rank rank 0's crops."""
        if self.world == 1:
            return None
        states: list = [None] * self.world
        dist.all_gather_object(states, {"gen": self.gen.get_state(), "rng": _rng_state()})
        return states

    def load(self, path: str) -> None:
        st = torch.load(path, map_location=self.device, weights_only=False)
        model_sd, params = st["model"], dict(self.model.named_parameters())
        grown = [k for k in ("gain", "inv_gain") if k in model_sd and k in params
                 and model_sd[k].shape != params[k].shape]
        for k in grown:  # a checkpoint of fewer rates: its optimiser state no longer fits
            model_sd[k] = extend_rates(model_sd[k], params[k].shape[0])
        self.model.load_state_dict(model_sd)
        if not grown:
            self.opt.load_state_dict(st["opt"])
        if self.aux_opt:
            self.aux_opt.load_state_dict(st["aux_opt"])
        if self.ema and st.get("ema") and not grown:
            self.ema.load_state_dict(st["ema"])
        self.step = st["step"]
        self.steps_before = st.get("steps_before", 0)  # checkpoints before this field: unknown, 0
        ranks = st.get("ranks")
        if ranks is not None and len(ranks) == self.world:
            self.gen.set_state(ranks[self.rank]["gen"])
            _set_rng_state(ranks[self.rank]["rng"])
        elif self.rank == 0:
            self.gen.set_state(st["gen"])
            _set_rng_state(st["rng"])
        else:  # another world size: ranks beyond 0 start streams of their own
            seed = (self.cfg.seed * 1000 + self.rank) * 1_000_003 + self.step
            self.gen.manual_seed(seed)
            torch.manual_seed(seed)

    def _init_from(self, path: str) -> None:
        """Parameters only: buffers (coder tables, the likelihood lower bound) stay the model's
        own. An fp16 export stores the 1e-9 lower bound as 0, and a likelihood of 0 is an
        infinite rate. The file's ``steps`` metadata (0 without it) becomes the base that
        exports count from, so they give the weights' whole history."""
        from ..zoo.checkpoint import canonical, load_checkpoint_file
        from ..zoo.registry import weights_metadata

        sd = canonical(load_checkpoint_file(path))
        sd = self.recipe.grown(sd)
        # every name of every parameter: h_a and h_s are also latent_codec.hyper's, and the
        # deduplicated listing names them only by the alias that canonical() drops
        named = self.recipe.inference(self.model).named_parameters(remove_duplicate=False)
        params = canonical(dict(named))  # folded copies are derived
        missing = sorted(set(params) - set(sd))
        if missing:
            raise InputError(f"{path}: no values for {len(missing)} parameters, e.g. {missing[0]}")
        with torch.no_grad():
            for k, p in params.items():
                if k in ("gain", "inv_gain") and sd[k].shape[1:] == p.shape[1:]:
                    sd[k] = extend_rates(sd[k], p.shape[0])
                if sd[k].shape != p.shape:
                    raise InputError(f"{path}: {k} has shape {tuple(sd[k].shape)}, the model {tuple(p.shape)}")
                p.copy_(sd[k].to(p.dtype))
        try:
            self.steps_before = int(weights_metadata(Path(path)).get("steps", 0))
        except ValueError:
            self.steps_before = 0

    def save_checkpoint(self, collective: bool = True) -> Path | None:
        """Rank 0 writes; ``collective`` (every rank calls at the same step) adds each
        rank's RNG states. After an error the other ranks may be gone: not collective."""
        ranks = self._rank_states() if collective else None
        if self.rank != 0:
            return None
        self.out.mkdir(parents=True, exist_ok=True)
        dest = self.out / "checkpoint.pt"
        state = self.state() | ({"ranks": ranks} if ranks else {})
        atomic_write(dest, lambda p: torch.save(state, p), force=True)
        return dest

    def _agree(self, stop: bool) -> bool:
        """Stop when any rank wants to (a signal, its clock): ranks that leave the loop
        at different steps would wait for each other's gradients forever."""
        if self.world == 1:
            return stop
        flag = torch.tensor([float(stop)], device=self.device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item())

    @property
    def averaged(self) -> torch.nn.Module:
        """The weights to validate and export: the moving average with ``--ema``."""
        return self.ema.module if self.ema else self.model

    def export_weights(self, name: str, dtype=torch.float32, averaged: bool = True) -> Path:
        """The trained model (its inference part; the moving average unless ``averaged``
        is False) as canonical safetensors with coder-independent metadata."""
        dest = self.out / f"{name}.safetensors"
        variable = self.cfg.variable_rate or self.recipe.always_variable
        meta = {"config": self.cfg.config, "family": self.recipe.family, "quality": "variable" if variable else "",
                "lambda": "" if self.cfg.lmbda is None else str(self.cfg.lmbda),
                "steps": str(self.steps_before + self.step)} | ({"ema": str(self.cfg.ema)} if averaged and self.ema else {})
        model = self.averaged if averaged else self.model
        save_weights(self.recipe.inference(model).state_dict(), dest, meta, dtype=dtype)
        return dest

    # -- loop --------------------------------------------------------------------------
    def _set_lr(self) -> None:
        lr = self.cfg.lr * (0.1 if self.step >= self.cfg.lr_drop_at * self.cfg.steps else 1.0)
        if self.step < self.cfg.warmup:
            lr *= (self.step + 1) / self.cfg.warmup
        for g in self.opt.param_groups:
            g["lr"] = lr

    def train_step(self) -> dict:
        x = self.data.batch(self.cfg.batch, self.gen).to(self.device)
        quality, weights = self.recipe.sample(x.shape[0], self.gen)
        self._set_lr()
        # every gradient, the aux optimiser's too: the last step's aux gradient on the
        # quantiles must not enter this step's clipping norm (nor make a resumed run differ)
        self.model.zero_grad(set_to_none=True)
        out = self.net(x) if quality is None else self.net(x, quality.to(self.device))
        metrics = self.recipe.loss(out, x, weights)
        metrics["loss"].backward()
        main = [p for group in self.opt.param_groups for p in group["params"]]
        norm = torch.nn.utils.clip_grad_norm_(main, self.cfg.clip)
        if torch.isfinite(norm):
            self.opt.step()
        else:  # one bad batch must not poison the weights: skip the update, count it
            self.skipped += 1
        if self.aux_opt is None:  # MRT has no factorized prior to fit
            self._average()
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
        self._average()
        self.step += 1
        return {k: float(v.detach()) for k, v in metrics.items()} | {"aux": float(aux.detach()), "skipped": self.skipped}

    def _average(self) -> None:
        """Fold this step's weights, the aux optimiser's quantiles included, into the average."""
        if self.ema:
            self.ema.update_parameters(self.model)

    @torch.no_grad()
    def validate(self) -> dict | None:
        """Mean loss, bpp and PSNR on the validation images; with ``--ema`` the moving
        average's too (suffix ``_ema``), from the same images: a paired comparison."""
        if not self.cfg.val_data:
            return None
        result = self._validate(self.model, "")
        if self.ema:
            result |= self._validate(self.ema.module, "_ema")
        return result

    def _validate(self, model: torch.nn.Module, tag: str) -> dict:
        model.eval()
        points = [(tag, *self.recipe.validation())]
        points += [(f"{tag}_q{q:g}", q, lmbda) for q, lmbda in self.recipe.top_validation()]
        m = self.recipe.multiple
        rows: dict[str, list] = {suffix: [] for suffix, _, _ in points}
        for p in list_images(self.cfg.val_data)[: self.cfg.val_limit]:
            img = torch.from_numpy(np.asarray(Image.open(p).convert("RGB")).copy()).permute(2, 0, 1)
            x = img[None].float().div(255).to(self.device)
            h, w = x.shape[-2:]
            x = x[..., : h - h % m, : w - w % m]
            for suffix, q, lmbda in points:
                out = model(x) if q is None else model(x, q)
                rows[suffix].append(self.recipe.loss(out, x, lmbda))
        model.train()
        return {k + suffix: float(sum(float(r[k]) for r in rs) / len(rs))
                for suffix, rs in rows.items() for k in ("loss", "bpp", "psnr")}

    def run(self, on_step=None) -> None:
        """Train to ``cfg.steps``; checkpoints periodically and on exit, Ctrl-C included."""
        stop = {"flag": False}

        def request_stop(*_):
            stop["flag"] = True

        previous = signal.signal(signal.SIGTERM, request_stop)  # torchrun signals every rank
        t0, s0 = time.perf_counter(), self.step
        try:
            while self.step < self.cfg.steps:
                late = self.cfg.time_limit is not None and time.perf_counter() - t0 > self.cfg.time_limit
                if self._agree(stop["flag"] or late):
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
        except BaseException:  # Ctrl-C or an error: keep what rank 0 has, without waiting on others
            self.save_checkpoint(collective=False)
            raise
        else:
            self.save_checkpoint()
        finally:
            signal.signal(signal.SIGTERM, previous)
