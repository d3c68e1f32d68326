"""``lalic bench``: the command line over the runner and the report."""

from __future__ import annotations

import re
from pathlib import Path

import click

from ..errors import InputError

_NUMBER = re.compile(r"\d+(\.\d+)?\Z")
_QUALITY_FLAGS = ("-q", "--quality")


def expand_quality_args(args: list[str]) -> list[str]:
    """Let ``-q 1 2 3`` mean ``-q 1 -q 2 -q 3``: numbers following a ``-q`` value belong to it.

    (A folder whose name is a bare number can still be given as ``./3`` or before ``-q``.)
    """
    out: list[str] = []
    i = 0
    while i < len(args):
        a = args[i]
        if a == "--":
            out.extend(args[i:])
            break
        out.append(a)
        i += 1
        if a in _QUALITY_FLAGS and i < len(args):
            out.append(args[i])
            i += 1
            while i < len(args) and _NUMBER.match(args[i]):
                out += [a, args[i]]
                i += 1
    return out


class BenchCommand(click.Command):
    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        return super().parse_args(ctx, expand_quality_args(list(args)))


def parse_qualities(values: tuple[str, ...]) -> tuple[float, ...]:
    """``("1", "2,3")`` -> ``(1.0, 2.0, 3.0)``: sorted, unique, each in 1..6."""
    found: list[float] = []
    for v in values:
        for part in v.replace(",", " ").split():
            try:
                q = float(part)
            except ValueError:
                raise InputError(f"-q: {part!r} is not a number (qualities are 1 .. 6)") from None
            if not 1 <= q <= 6:
                raise InputError(f"-q: quality {part} is outside 1 .. 6")
            found.append(q)
    return tuple(sorted(set(found)))


def _check_output(path: str | None, option: str) -> None:
    if path is None:
        return
    parent = Path(path).expanduser().parent
    if not parent.is_dir():
        raise InputError(f"{option} {path}: folder {parent} does not exist")
    if Path(path).is_dir():
        raise InputError(f"{option} {path}: is a folder")
    if option == "--plot":
        from matplotlib.backend_bases import FigureCanvasBase

        formats = FigureCanvasBase.get_supported_filetypes()
        if Path(path).suffix.lstrip(".").lower() not in formats:
            raise InputError(f"--plot {path}: unknown image format (use one of .{', .'.join(sorted(formats))})")


@click.command("bench", cls=BenchCommand)
@click.argument("folder", metavar="DIR")
@click.option("-q", "--quality", "qualities", multiple=True, metavar="Q [Q ...]",
              help="Qualities to test, e.g. -q 1 2 3 or -q 1,3,6 (default: every quality with weights).")
@click.option("--weights", help="Weights name or checkpoint path (default: the best available).")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--estimate", is_flag=True, help="Rate from the likelihoods instead of real coding (faster).")
@click.option("--vs", "vs", metavar="CODECS", help="Also run classical codecs: jpeg, jpeg444, jpeg420, webp, avif "
              "(comma-separated).")
@click.option("--json", "json_out", metavar="OUT.json", help="Write the results (CompressAI layout).")
@click.option("--csv", "csv_out", metavar="OUT.csv", help="Write a CSV (per quality, or per image with --per-image).")
@click.option("--plot", "plot_out", metavar="OUT.png", help="Write R-D curves (PSNR and MS-SSIM vs bpp).")
@click.option("--per-image", is_flag=True, help="Per-image results in the JSON / CSV.")
@click.option("--limit", type=click.IntRange(1), help="Only the first N images (sorted by name).")
def bench(folder, qualities, weights, device, estimate, vs, json_out, csv_out, plot_out, per_image, limit) -> None:
    """Benchmark the codec on the images in DIR: rate, PSNR, MS-SSIM, speed and BD-rates."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from . import classical
    from .report import Report
    from .runner import DEFAULT_QUALITIES, Runner, Settings, available_qualities, list_images

    out = Console(highlight=False, soft_wrap=True)
    err = Console(stderr=True, highlight=False, soft_wrap=True)

    def warn(message: str) -> None:
        err.print(f"lalic: warning: {message}", markup=False)

    vs_keys = classical.parse_vs(vs)
    for path, option in ((json_out, "--json"), (csv_out, "--csv"), (plot_out, "--plot")):
        _check_output(path, option)
    paths = list_images(folder, limit)

    wanted = parse_qualities(qualities)
    if not wanted:
        wanted = tuple(available_qualities(weights, DEFAULT_QUALITIES))
        if not wanted:
            raise InputError("no weights installed for any quality 1 .. 6 (see `lalic weights list`)")
        missing = [q for q in DEFAULT_QUALITIES if q not in wanted]
        if missing:
            warn(f"no weights for quality {', '.join(f'{q:g}' for q in missing)}: skipped")
    else:
        from ..zoo.registry import resolve

        for q in wanted:
            resolve(weights, q)  # fail now, not after an hour of coding

    settings = Settings(qualities=wanted, weights=weights, device=device, estimate=estimate, vs=tuple(vs_keys))
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=err, transient=True) as progress:
        runner = Runner(settings, progress, warn)
        result = runner.run(paths)

    n = len(result.images)
    description = (
        f"lalic bench on {n} image(s) from {folder}, device {result.device}, "
        + ("rate estimated from likelihoods" if estimate else "real coding (bpp of the whole .lal file)")
        + f", weights {', '.join(sorted(set(result.weights.values())))}"
    )
    report = Report(result, description)
    out.print(f"{n} image(s), {len(result.skipped)} skipped, qualities "
              f"{' '.join(f'{q:g}' for q in wanted)}, device {result.device}", markup=False)
    report.render(out)
    if json_out:
        report.write_json(json_out, per_image)
        out.print(f"wrote {json_out}", markup=False)
    if csv_out:
        report.write_csv(csv_out, per_image)
        out.print(f"wrote {csv_out}", markup=False)
    if plot_out:
        report.write_plot(plot_out)
        out.print(f"wrote {plot_out}", markup=False)
