"""How far the bundled weights are from WebP and AVIF, and how many steps the trend says it takes.

    python benchmarks/training_curve.py                      # table + projection
    python benchmarks/training_curve.py --plot curve.png     # and the plot

Reads ``training_history.json`` (one Kodak ``lalic bench`` per bundled weights). The
rate factor against VTM is ``1 + BD/100`` (bits needed for VTM's quality). The fit is a
power law ``factor = a * steps^b`` through the points from ``--fit-from`` steps on (the
first weights were made with another recipe); a power law in steps is what learned
codecs' training curves look like over a decade, not a promise beyond it.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

HERE = Path(__file__).resolve().parent


def fit_power_law(steps: list[float], factors: list[float]) -> tuple[float, float]:
    """Least squares of ``ln factor = ln a + b ln steps``: ``(a, b)``."""
    xs, ys = [math.log(s) for s in steps], [math.log(f) for f in factors]
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    if n < 2 or sxx == 0:
        raise ValueError("need two or more distinct step counts to fit")
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx
    return math.exp(my - b * mx), b


def steps_to_reach(a: float, b: float, factor: float) -> float:
    """Steps at which the fitted factor falls to ``factor`` (inf if it never does)."""
    return math.inf if b >= 0 else (factor / a) ** (1 / b)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--history", type=Path, default=HERE / "training_history.json")
    ap.add_argument("--fit-from", type=int, default=9000, help="fit only points with at least this many steps")
    ap.add_argument("--plot", type=Path)
    args = ap.parse_args()
    hist = json.loads(args.history.read_text())
    pts = sorted(hist["points"], key=lambda p: p["steps"])
    print("| steps | BD vs VTM (PSNR) | rate factor | WebP vs these weights |")
    print("|---|---|---|---|")
    for p in pts:
        webp = "n/a" if p["webp_vs_lalic_psnr"] is None else f"{p['webp_vs_lalic_psnr']:+.2f} %"
        print(f"| {p['steps']:,} | {p['bd_vtm_psnr']:+.2f} % | {1 + p['bd_vtm_psnr'] / 100:.3f} | {webp} |")
    used = [p for p in pts if p["steps"] >= args.fit_from]
    a, b = fit_power_law([p["steps"] for p in used], [1 + p["bd_vtm_psnr"] / 100 for p in used])
    print(f"\nfit over {len(used)} points ({used[0]['steps']:,}..{used[-1]['steps']:,} steps): "
          f"factor = {a:.3g} * steps^{b:.3f}")
    targets = {"WebP": hist["webp_vs_vtm_psnr"], "AVIF": hist["avif_vs_vtm_psnr"]}
    for name, bd in targets.items():
        need = steps_to_reach(a, b, 1 + bd / 100)
        print(f"{name} level (+{bd:.2f} % vs VTM): {need:,.0f} steps if the trend held"
              if math.isfinite(need) else f"{name} level: not reached on this trend")
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6.4, 4.2))
        ax.loglog([p["steps"] for p in pts], [1 + p["bd_vtm_psnr"] / 100 for p in pts], "o-",
                  label="lalic-small-vr (Kodak, measured)")
        last = max(p["steps"] for p in pts)
        hi = max(last * 2, min(steps_to_reach(a, b, 1 + min(targets.values()) / 100), last * 30))
        xs = [used[0]["steps"] * (hi / used[0]["steps"]) ** (i / 50) for i in range(51)]
        ax.loglog(xs, [a * x**b for x in xs], "--", color="grey", label=f"power-law fit (b = {b:.2f})")
        for (name, bd), style in zip(targets.items(), (":", "-.")):
            ax.axhline(1 + bd / 100, linestyle=style, color="k", linewidth=1, label=f"{name} (same anchor)")
        ax.set_xlabel("training steps (batch 8, 128 px crops)")
        ax.set_ylabel("bits relative to VTM-9.1 at equal PSNR")
        ax.set_title("Bundled weights: BD-rate vs training steps")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(args.plot, dpi=120)
        print(f"plot: {args.plot}")


if __name__ == "__main__":
    main()
