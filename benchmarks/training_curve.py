"""How far the bundled weights are from WebP and AVIF, and how many steps the trend says it takes.

    python benchmarks/training_curve.py                      # table + projection
    python benchmarks/training_curve.py --plot curve.png     # and the plot

Reads ``training_history.json`` (one Kodak ``lalic bench`` per bundled weights). The
rate factor against VTM is ``1 + BD/100`` (bits needed for VTM's quality). The fit is a
power law ``factor = a * steps^b`` through the points from ``--fit-from`` steps on (the
first weights were made with another recipe); a power law in steps is what learned
codecs' training curves look like over a decade, not a promise beyond it.

The floor also needs a PSNR lead at every WebP setting inside LALIC's rates, and a
BD-rate can turn negative while the highest rates still trail. So the margins at WebP's
settings (``lalic bench``'s own ``quality_margins``) are fitted too, each as a straight
line in ln(steps), which can cross zero; the worst one says when the floor holds.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from lalic_cli.bench.bdrate import quality_margins

HERE = Path(__file__).resolve().parent


def fit_power_law(steps: list[float], factors: list[float]) -> tuple[float, float]:
    """Least squares of ``ln factor = ln a + b ln steps``: ``(a, b)``."""
    c, b = fit_log_line(steps, [math.log(f) for f in factors])
    return math.exp(c), b


def steps_to_reach(a: float, b: float, factor: float) -> float:
    """Steps at which the fitted factor falls to ``factor`` (inf if it never does)."""
    return math.inf if b >= 0 else (factor / a) ** (1 / b)


def fit_log_line(steps: list[float], values: list[float]) -> tuple[float, float]:
    """Least squares of ``value = c + d ln steps``: ``(c, d)``."""
    xs = [math.log(s) for s in steps]
    n = len(xs)
    mx, my = sum(xs) / n, sum(values) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    if n < 2 or sxx == 0:
        raise ValueError("need two or more distinct step counts to fit")
    d = sum((x - mx) * (y - my) for x, y in zip(xs, values)) / sxx
    return my - d * mx, d


def webp_margins(hist: dict, pts: list[dict]) -> dict[float, list[tuple[int, float]]]:
    """``{WebP setting: [(steps, dB ahead of WebP at its rate), ...]}`` for the points with Kodak tables
    (but not those whose PSNR range did not overlap WebP's, which have no BD-rate against it)."""
    w = hist["webp_kodak"]
    out: dict[float, list[tuple[int, float]]] = {}
    for p in pts:
        if "kodak" not in p or p["webp_vs_lalic_psnr"] is None:
            continue
        for m in quality_margins(w["bpp"], w["psnr-rgb"], p["kodak"]["bpp"], p["kodak"]["psnr-rgb"]):
            out.setdefault(w["quality"][w["bpp"].index(m.rate)], []).append((p["steps"], m.margin))
    return out


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
    w = hist.get("webp_kodak")
    margins = webp_margins(hist, pts) if w else {}
    fits = {}  # WebP setting: (c, d, first fitted step) of margin = c + d ln(steps)
    for q, series in margins.items():
        fit = [(s, v) for s, v in series if s >= args.fit_from]
        if len({s for s, _ in fit}) >= 2:
            fits[q] = (*fit_log_line(*zip(*fit)), fit[0][0])
    if margins:
        print("\nPSNR margin at WebP's settings (dB; positive: LALIC leads), LALIC interpolated in log-rate:")
        print("| steps | " + " | ".join(f"WebP {q:g} ({w['bpp'][w['quality'].index(q)]:.2f} bpp)" for q in margins) + " |")
        print("|---|" + "---|" * len(margins))
        for p in (p for p in pts if "kodak" in p and p["webp_vs_lalic_psnr"] is not None):
            cells = [next((f"{v:+.2f}" for s, v in margins[q] if s == p["steps"]), "out of range") for q in margins]
            print(f"| {p['steps']:,} | " + " | ".join(cells) + " |")
        zero = {}
        for q, (c, d, _) in fits.items():
            zero[q] = math.exp(-c / d) if d > 0 else math.inf
            print(f"WebP {q:g}: margin = {c:.2f} + {d:.3f} ln(steps), zero at "
                  + (f"{zero[q]:,.0f} steps" if math.isfinite(zero[q]) else "never on this trend"))
        ceil = [(p["steps"], p["kodak_ceiling_db"]) for p in pts if "kodak_ceiling_db" in p and p["steps"] >= args.fit_from]
        if len(ceil) >= 2:  # a necessary condition: the transforms must reach WebP's PSNR at all
            c, d = fit_log_line(*zip(*ceil))
            top = max(margins, key=lambda q: w["quality"].index(q))
            target = w["psnr-rgb"][w["quality"].index(top)]
            print(f"transform ceiling on Kodak: {', '.join(f'{v:.2f}' for _, v in ceil)} dB; fit {c:.2f} + {d:.3f} ln(steps) "
                  f"reaches WebP {top:g}'s {target:.2f} dB at {math.exp((target - c) / d):,.0f} steps (a lower bound)")
        if zero:
            q, need = max(zero.items(), key=lambda kv: kv[1])
            print(f"a lead at every WebP setting: {need:,.0f} steps if the trends held (the last to cross: WebP {q:g})"
                  if math.isfinite(need) else "a lead at every WebP setting: not reached on these trends")
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, (ax, mx) = plt.subplots(1, 2, figsize=(12, 4.2))
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
        for i, (q, series) in enumerate(margins.items()):
            mx.semilogx(*zip(*series), "o-", color=f"C{i}", label=f"WebP {q:g}")
            if q in fits:
                c, d, first = fits[q]
                end = min(max(zero.get(q, last) * 1.1, last * 1.5), last * 30)
                xs = [first * (end / first) ** (j / 50) for j in range(51)]
                mx.semilogx(xs, [c + d * math.log(x) for x in xs], "--", color=f"C{i}", linewidth=0.8)
        mx.axhline(0, color="k", linewidth=1)
        mx.set_xlabel("training steps (batch 8, 128 px crops)")
        mx.set_ylabel("PSNR margin over WebP at its rate (dB)")
        mx.set_title("Kodak: lead (+) or gap (-) at each WebP setting")
        mx.grid(True, which="both", alpha=0.3)
        mx.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(args.plot, dpi=120)
        print(f"plot: {args.plot}")


if __name__ == "__main__":
    main()
