"""Control run for the R-D issue: CompressAI's mbt2018-mean trained with lalic's exact recipe.

    python benchmarks/investigations/train_control.py --data DIR --out RUN --lambda 0.0067 [lalic-train options]

Same data, crops, batch, optimiser, lambda and validation as ``lalic train``; only the
model differs. Comparing its validation curve with LALIC's tells whether LALIC learns
slower per step than a plain hyperprior, i.e. whether a recipe bug is worth hunting.
"""

from __future__ import annotations

import argparse
import json

from compressai.zoo import mbt2018_mean

from lalic_cli.training import Trainer, TrainConfig


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--lambda", dest="lmbda", type=float, default=0.0067)
    ap.add_argument("--steps", type=int, default=10000)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--patch", type=int, default=128)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--val-data")
    ap.add_argument("--val-every", type=int, default=500)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--time-limit", type=float)
    ap.add_argument("--resume")
    a = ap.parse_args()
    cfg = TrainConfig(data=a.data, out=a.out, config="mbt2018-mean", lmbda=a.lmbda, steps=a.steps,
                      batch=a.batch, patch=a.patch, lr=a.lr, val_data=a.val_data, val_every=a.val_every,
                      device=a.device, time_limit=a.time_limit, checkpoint_every=a.val_every)
    model = mbt2018_mean(quality=1, pretrained=False)  # N=128, M=192: 7.0M parameters, LALIC small 6.3M
    trainer = Trainer(cfg, resume=a.resume, model=model)

    def on_step(step: int, m: dict) -> None:
        if "val_psnr" in m or step % 100 == 0:
            print(json.dumps({"step": step, **{k: round(v, 4) for k, v in m.items()}}), flush=True)

    trainer.run(on_step)


if __name__ == "__main__":
    main()
