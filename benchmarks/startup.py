"""Start-up cost of the ``lalic`` commands, side by side with ``python -c "import torch"``.

    python benchmarks/startup.py                         # median of 5 runs per command
    python benchmarks/startup.py --baseline /tmp/old     # also time another tree (before/after)
    python benchmarks/startup.py --runs 9 --json startup.json
    python benchmarks/startup.py --image kodim01.png     # code another image than the sample
    python benchmarks/startup.py --cpu                   # CPU time instead of wall time

Every run is a fresh process, as a user typing the command gets: ``python -m lalic_cli.cli``
with ``PYTHONPATH`` set to the tree under test (this checkout, and ``--baseline``'s tree
if given), which costs the same as the ``lalic`` script. The commands run interleaved
(one round of every command, then the next round), so drift in machine load hits all of
them alike; each is run once untimed first (page cache, the BiWKV kernel build).

The table gives the median wall time and its ratio to importing torch, the floor for any
command that codes an image. ``import for coding`` is ``import lalic_cli.codec``: what
``encode`` and ``decode`` import before they start working. ``encode`` and ``decode``
code the bundled 320x224 sample with the bundled weights, so their time also includes
loading the model and the coding itself.

The second table splits that: ``coding`` is the same command run a second time in one
process (``main(args)`` twice, the second timed: the model, its portable copy and every
import are then in place, so what remains is reading, coding and writing the image), and
``overhead`` is the fresh command's time less ``import torch`` and that coding time:
what every call pays on top of torch and the work itself (target: at most 0.5 s).
On a machine busy with other work, wall times swing with the load; ``--cpu`` reports the
processes' user + system CPU time instead, which the load hardly moves (run it with
``OMP_NUM_THREADS=1``, or CPU time counts every thread).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from lalic_cli.runtime import cpu_name

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "assets" / "sample.png"
TORCH = "python -c 'import torch'"
CODING = ("lalic encode", "lalic decode")
# the command twice in one process; prints the second run's time
_TWICE = """
import os, sys, time
from lalic_cli.cli import main
main(sys.argv[1:], standalone_mode=False)
clock = time.process_time if os.environ.get("STARTUP_CPU") else time.perf_counter
t0 = clock()
main(sys.argv[1:], standalone_mode=False)
print(f"{clock() - t0:.6f}")
"""


def _coding_args(image: Path, work: Path) -> dict[str, list[str]]:
    return {
        "lalic encode": ["encode", str(image), "-o", str(work / "out.lal"), "--force"],
        "lalic decode": ["decode", str(work / "in.lal"), "-o", str(work / "out.png"), "--force"],
    }


def _lalic_commands(image: Path, work: Path) -> dict[str, list[str]]:
    lalic = [sys.executable, "-m", "lalic_cli.cli"]
    coding = _coding_args(image, work)
    return {
        "lalic --help": [*lalic, "--help"],
        "lalic info": [*lalic, "info", str(work / "in.lal")],
        "lalic weights list": [*lalic, "weights", "list"],
        "import for coding": [sys.executable, "-c", "import lalic_cli.codec"],
        **{name: [*lalic, *args] for name, args in coding.items()},
        **{f"{name} (coding)": [sys.executable, "-c", _TWICE, *args] for name, args in coding.items()},
    }


def _env(tree: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(tree)}


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _run(cmd: list[str], cwd: Path, env: dict[str, str], cpu: bool = False) -> float:
    """Wall (or CPU) time of the command; for the in-process repeat, the time it prints."""
    env = {**env, "STARTUP_CPU": "1"} if cpu else env
    c0, t0 = _cpu_seconds(), time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    dt = _cpu_seconds() - c0 if cpu else time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr.strip()}")
    return float(proc.stdout.split()[-1]) if _TWICE in cmd else dt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5, help="timed runs per command (median reported)")
    ap.add_argument("--baseline", type=Path, help="another lalic tree to time the same commands with")
    ap.add_argument("--json", type=Path, help="also write the medians and raw times here")
    ap.add_argument("--image", type=Path, default=SAMPLE, help="image to encode and decode (default: the sample)")
    ap.add_argument("--cpu", action="store_true", help="report CPU time (user + system), not wall time")
    args = ap.parse_args()
    image = args.image.resolve()

    trees = {"after": ROOT} if args.baseline is None else {"before": args.baseline.resolve(), "after": ROOT}
    machine = f"{cpu_name()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
    clock = "CPU time" if args.cpu else "wall time"
    print(f"# {machine}; {clock}, median of {args.runs} fresh processes per command; image {image.name}", flush=True)
    with tempfile.TemporaryDirectory(prefix="lalic-startup-") as tmp:
        work = Path(tmp)
        _run([sys.executable, "-m", "lalic_cli.cli", "encode", str(image), "-o", str(work / "in.lal")], work,
             _env(ROOT))
        plan = [("python -c pass", None, [sys.executable, "-c", "pass"]),
                (TORCH, None, [sys.executable, "-c", "import torch"])]
        plan += [(name, tree, cmd) for name, cmd in _lalic_commands(image, work).items() for tree in trees]
        for _, tree, cmd in plan:  # warm-up, untimed
            _run(cmd, work, _env(trees.get(tree, ROOT)))
        times: dict[tuple[str, str | None], list[float]] = {(name, tree): [] for name, tree, _ in plan}
        for _ in range(args.runs):
            for name, tree, cmd in plan:
                times[name, tree].append(_run(cmd, work, _env(trees.get(tree, ROOT)), args.cpu))

    med = {key: statistics.median(ts) for key, ts in times.items()}
    ref = med[TORCH, None]
    names = list(dict.fromkeys(name for name, _ in med))
    width = max(map(len, names))
    head = "  ".join(f"{t + ' s':>9}  {'x torch':>7}" for t in trees)
    print(f"{'command':<{width}}  {head}")
    for name in names:
        cells = [med[name, t] for t in trees] if (name, None) not in med else [med[name, None]]
        print(f"{name:<{width}}  " + "  ".join(f"{c:9.2f}  {c / ref:7.2f}" for c in cells))
    print(f"\noverhead = command - {TORCH} - coding (target <= 0.50 s)")
    print(f"{'command':<{width}}  " + "  ".join(f"{t + ' s':>9}" for t in trees))
    for name in CODING:
        cells = [med[name, t] - ref - med[f"{name} (coding)", t] for t in trees]
        print(f"{name:<{width}}  " + "  ".join(f"{c:9.2f}" for c in cells))
    if args.json:
        rows = [{"command": n, "tree": t, "median_s": m, "runs_s": times[n, t]} for (n, t), m in med.items()]
        args.json.write_text(json.dumps({"machine": machine, "clock": clock, "trees": {k: str(v) for k, v in trees.items()},
                                         "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
