"""``lalic bench``: the command line over the runner and the report."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Callable

import click

from ..effort import DEFAULT_EFFORT, check_effort, steps_for
from ..errors import InputError
from ..families import DEFAULT_FAMILY, refines, refining_labels
from .families import FAMILIES

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


def parse_qualities(values: tuple[str, ...], codec: str = DEFAULT_FAMILY) -> tuple[float, ...]:
    """``("1", "2,3")`` -> ``(1.0, 2.0, 3.0)``: sorted, unique, each one of ``codec``'s qualities
    (LALIC: 1 .. 8, fractions too; MRT: 1, 2 or 3)."""
    family = FAMILIES[codec]
    found = [family.parse_quality(part) for v in values for part in v.replace(",", " ").split()]
    return tuple(sorted(set(found)))


def _plot_formats() -> set[str]:
    from matplotlib.backend_bases import FigureCanvasBase

    return set(FigureCanvasBase.get_supported_filetypes())


def _picture_formats() -> set[str]:
    from PIL import Image

    return {ext.lstrip(".") for ext, fmt in Image.registered_extensions().items() if fmt in Image.SAVE}


#: output options written as images: option -> the extensions it can write
_IMAGE_OUTPUTS: dict[str, Callable[[], set[str]]] = {"--plot": _plot_formats, "--picture": _picture_formats}


def _check_output(path: str | None, option: str) -> None:
    if path is None:
        return
    parent = Path(path).expanduser().parent
    if not parent.is_dir():
        raise InputError(f"{option} {path}: folder {parent} does not exist")
    if Path(path).is_dir():
        raise InputError(f"{option} {path}: is a folder")
    if option in _IMAGE_OUTPUTS:
        formats = _IMAGE_OUTPUTS[option]()
        if Path(path).suffix.lstrip(".").lower() not in formats:
            raise InputError(f"{option} {path}: unknown image format (use one of .{', .'.join(sorted(formats))})")


@click.command("bench", cls=BenchCommand)
@click.argument("folder", metavar="DIR")
@click.option("-q", "--quality", "qualities", multiple=True, metavar="Q [Q ...]",
              help="Qualities to test, e.g. -q 1 2 3 or -q 1,3,6 (default: every quality with weights; "
              "LALIC 1 .. 8 as the weights code them, MRT 1 2 3).")
@click.option("--codec", type=click.Choice(list(FAMILIES)), default=DEFAULT_FAMILY, show_default=True,
              help="Model family: mrt (extreme rates) also runs LALIC q1, AVIF at its lowest setting and "
              "2x / 4x downscaled AVIF and WebP.")
@click.option("--weights", help="Weights name or checkpoint path (default: the best available).")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("-e", "--effort", default=str(DEFAULT_EFFORT), show_default=True, metavar="1..9",
              callback=lambda _ctx, _param, value: check_effort(value),
              help="Encoder effort, as lalic encode --effort (8 and 9 refine the latents: slow).")
@click.option("--estimate", is_flag=True, help="Rate from the likelihoods instead of real coding (faster).")
@click.option("--vs", "vs", metavar="CODECS", help="Also run classical codecs: jpeg, jpeg444, jpeg420, webp, avif, or "
              "the extreme-rate ones (avif-min, avif-down2, avif-down4, webp-down2, webp-down4) (comma-separated).")
@click.option("--json", "json_out", metavar="OUT.json", help="Write the results (CompressAI layout).")
@click.option("--csv", "csv_out", metavar="OUT.csv", help="Write a CSV (per quality, or per image with --per-image).")
@click.option("--plot", "plot_out", metavar="OUT.png", help="Write R-D curves (PSNR and MS-SSIM vs bpp).")
@click.option("--picture", "picture_out", metavar="OUT.png",
              help="Write one image side by side: the original and each codec at its point closest to --picture-bpp.")
@click.option("--picture-image", metavar="NAME", help="The image for --picture (default: the first).")
@click.option("--picture-bpp", type=click.FloatRange(0, min_open=True), default=0.02, show_default=True,
              help="The rate --picture shows each codec closest to.")
@click.option("--per-image", is_flag=True, help="Per-image results in the JSON / CSV.")
@click.option("--limit", type=click.IntRange(1), help="Only the first N images (sorted by name).")
def bench(folder, qualities, codec, weights, device, effort, estimate, vs, json_out, csv_out, plot_out, picture_out,
          picture_image, picture_bpp, per_image, limit) -> None:
    """Benchmark the codec on the images in DIR: rate, PSNR, MS-SSIM, speed and BD-rates."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from ..imagefiles import list_images
    from . import classical
    from .report import Report
    from .runner import Runner, Settings, available_qualities

    out = Console(highlight=False, soft_wrap=True)
    err = Console(stderr=True, highlight=False, soft_wrap=True)

    def warn(message: str) -> None:
        err.print(f"lalic: warning: {message}", markup=False)

    if steps_for(effort) and (estimate or not refines(codec)):
        raise InputError(f"--effort {effort} refines {refining_labels()} latents before real coding: "
                         + ("drop --estimate" if estimate else f"the {codec} codec has efforts up to {DEFAULT_EFFORT}"))
    family = FAMILIES[codec]
    vs_keys = tuple(dict.fromkeys((*family.comparisons, *classical.parse_vs(vs))))
    for path, option in ((json_out, "--json"), (csv_out, "--csv"), (plot_out, "--plot"), (picture_out, "--picture")):
        _check_output(path, option)
    paths = list_images(folder, limit)
    if picture_image and not picture_out:
        raise InputError("--picture-image names the image of --picture OUT.png, which is not given")
    if picture_image and picture_image not in {p.name for p in paths}:
        raise InputError(f"--picture-image {picture_image}: no such image among the {len(paths)} benchmarked")

    wanted = parse_qualities(qualities, codec)
    if not wanted:
        wanted = tuple(available_qualities(weights, family.qualities, codec))
        span = f"{family.qualities[0]:g} .. {family.qualities[-1]:g}"
        if not wanted:
            raise InputError(f"no {family.label} weights installed for any quality {span} (see `lalic weights list`)")
        missing = [q for q in family.qualities if q not in wanted]
        if missing:
            warn(f"no {family.label} weights for quality {', '.join(f'{q:g}' for q in missing)}: skipped")
    else:
        for q in wanted:
            family.resolve(weights, q)  # fail now, not after an hour of coding

    settings = Settings(qualities=wanted, weights=weights, device=device, estimate=estimate, vs=vs_keys,
                        codec=codec, picture=picture_out is not None, picture_image=picture_image, effort=effort)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=err, transient=True) as progress:
        runner = Runner(settings, progress, warn)
        result = runner.run(paths)

    n = len(result.images)
    description = (
        f"lalic bench on {n} image(s) from {folder}, device {result.device}, "
        + ("rate estimated from likelihoods" if estimate else "real coding (bpp of the whole .lal file)")
        + f", weights {', '.join(sorted(set(result.weights.values())))}"
        + (f", encoder effort {effort}" if effort != DEFAULT_EFFORT else "")
    )
    report = Report(result, description)
    out.print(f"{n} image(s), {len(result.skipped)} skipped, {family.label} qualities "
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
    if picture_out:
        from .picture import write_picture

        shown = write_picture(result, picture_out, picture_bpp)
        out.print(f"wrote {picture_out}: {result.picture_image}, {len(shown)} tiles "
                  f"(each codec at its point closest to {picture_bpp:g} bpp)", markup=False)
