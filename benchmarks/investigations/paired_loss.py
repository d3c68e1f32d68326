"""Compare two training runs batch by batch: a low-noise A/B for recipe changes.

    python benchmarks/investigations/paired_loss.py A.log B.log [--after STEP]

Both runs must start from the same weights with the same ``--seed`` (and world size),
so that step n draws the same crops and lambdas in both. The loss ``lalic train`` logs
every 25 steps is measured on the batch before the update, i.e. on crops the run has
not yet trained on, so the paired differences compare the two models on the same held-out
batches. Validation on three images at one point in time is a noisier comparison.
"""

from __future__ import annotations

import argparse
import re
import statistics

LINE = re.compile(r"step (\d+)/\d+: loss ([\d.]+)\s+bpp ([\d.]+)\s+psnr ([\d.]+)")


def read(path: str) -> dict[int, float]:
    """Loss by step (the first line logged for a step)."""
    out: dict[int, float] = {}
    with open(path) as f:
        for line in f:
            m = LINE.search(line)
            if m:
                out.setdefault(int(m[1]), float(m[2]))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("a")
    ap.add_argument("b")
    ap.add_argument("--after", type=int, default=0, help="only steps after this one")
    args = ap.parse_args()
    a, b = read(args.a), read(args.b)
    steps = sorted(s for s in a.keys() & b.keys() if s > args.after)
    if len(steps) < 2:
        raise SystemExit("fewer than two steps logged by both runs")
    rel = [(b[s] - a[s]) / a[s] for s in steps]
    se = statistics.stdev(rel) / len(rel) ** 0.5
    print(f"{len(steps)} paired batches, steps {steps[0]}..{steps[-1]}")
    print(f"loss B / A - 1: {100 * statistics.mean(rel):+.2f} % +- {100 * se:.2f} % (standard error); "
          f"B lower on {sum(r < 0 for r in rel)} of {len(rel)}")


if __name__ == "__main__":
    main()
