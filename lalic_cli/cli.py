"""The ``lalic`` command line: commands parse, call the library, print.

Start-up matters here (``lalic --help`` should answer at once), so this module
imports only click, rich's console and lalic's light modules; torch and the
codec are imported by the commands that code images.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import click
from rich.console import Console

from . import errors
from .fileio import OutputExistsError, atomic_write, names_folder, ready_output_place
from .families import DEFAULT_FAMILY, FAMILIES
from .progress import DelayedSpinner
from .resources import DISTRIBUTION
from .runtime import one_line_warnings, tune_allocator

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

DEVICE = click.Choice(["auto", "cpu", "cuda"])


class LalicGroup(click.Group):
    """Turns the library's user-facing errors into one line and exit code 2."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except click.UsageError as e:  # a command's options: one line too, not click's three
            err.print(f"lalic: error: {e.format_message()}", markup=False)
            ctx.exit(2)
        except errors.USER_ERRORS as e:
            err.print(f"lalic: error: {e}", markup=False)
            ctx.exit(2)
        except KeyboardInterrupt:
            err.print("lalic: interrupted", markup=False)
            ctx.exit(130)


@click.group(cls=LalicGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name=DISTRIBUTION)
def main() -> None:
    """LALIC learned image codec: encode images to .lal files and back."""
    tune_allocator()
    one_line_warnings()


def _output_for(src: str, out_opt: str | None, many: bool, suffix: str) -> str:
    if out_opt == "-" or (src == "-" and out_opt is None):
        return "-"
    if out_opt is not None:
        if names_folder(out_opt, many):
            return str(Path(out_opt) / (Path(src).stem + suffix))
        return out_opt
    return str(Path(src).with_suffix(suffix))


def _write(dest: str, data_or_writer, force: bool) -> None:
    if dest == "-":
        sys.stdout.buffer.write(data_or_writer)
        sys.stdout.buffer.flush()
    else:
        atomic_write(dest, data_or_writer, force=force)


def _spinner(description: str, quiet: bool) -> DelayedSpinner:
    """A spinner on stderr for slow images, only when both stdout and stderr are a terminal."""
    return DelayedSpinner(err, description, enabled=not quiet and out.is_terminal and err.is_terminal)


def _ready_output(output: str | None, items: tuple[str, ...], what: str) -> None:
    """Check where outputs go before torch is even imported: create or check ``-o``'s folder,
    and refuse to pour binary ``what`` onto a terminal (as gzip and cwebp do)."""
    if (output == "-" or (output is None and "-" in items)) and sys.stdout.isatty():
        raise errors.InputError(f"refusing to write {what} to a terminal (redirect stdout or give -o FILE)")
    if output not in (None, "-"):
        ready_output_place(output, len(items) > 1)


def _name(item: str) -> str:
    """How messages name an input: ``-`` is stdin."""
    return "stdin" if item == "-" else item


def _run_batch(items: list[str], one, console: Console, jobs: int = 1) -> None:
    """Run ``one`` per input; a bad input is reported on stderr and the rest still run. With
    ``jobs`` > 1, in that many worker processes, with the same output (``batch``)."""
    failures = []
    if jobs > 1 and len(items) > 1 and console is out:  # not with stdin or stdout
        from .batch import in_pool

        outcomes = in_pool(items, one, console, jobs)
    else:
        outcomes = _in_turn(items, one)
    for item, error in outcomes:
        if error is not None:
            message = str(error) if str(error).startswith(f"{_name(item)}:") else f"{_name(item)}: {error}"
            err.print(f"lalic: error: {message}", markup=False)
            failures.append(item)
    if failures:
        err.print(f"lalic: {len(failures)} of {len(items)} inputs failed: {', '.join(failures)}", markup=False)
        sys.exit(2)


def _in_turn(items: list[str], one):
    for item in items:
        try:
            one(item)
        except errors.USER_ERRORS as e:
            if len(items) == 1:
                raise
            yield item, e
        else:
            yield item, None


JOBS = click.option("-j", "--jobs", type=click.IntRange(1), default=1, show_default=True,
                    help="Code this many files at once, in as many processes.")


def _effort(_ctx, _param, value: str) -> int:
    """Checked here, so that a bad value fails before any image is read."""
    from .effort import check_effort

    return check_effort(value)


@main.command()
@click.argument("images", nargs=-1, required=True)
@click.option("-q", "--quality", default="3", show_default=True,
              help="1 (smallest) .. 6 (best); 7 and 8 with weights trained that far; MRT: 1 .. 3.")
@click.option("--codec", type=click.Choice(list(FAMILIES)), default=DEFAULT_FAMILY, show_default=True,
              help="Model family: mrt codes extreme rates (below 0.03 bpp).")
@click.option("-e", "--effort", default="7", show_default=True, callback=_effort, metavar="1..9",
              help="Higher is slower and smaller: 8 and 9 refine the latents of each image "
                   "(seconds to minutes on a CPU); files decode as usual.")
@click.option("-o", "--output", help="Output file, folder (several inputs) or - for stdout.")
@click.option("--weights", help="Weights name or checkpoint path (default: the best available).")
@click.option("--device", type=DEVICE, default="auto", show_default=True)
@click.option("--max-pixels", type=click.IntRange(1), default=None, help="Refuse larger images.")
@click.option("-f", "--force", is_flag=True, help="Overwrite existing outputs.")
@click.option("--quiet", is_flag=True, help="Print only errors and notes (no progress, no summary).")
@JOBS
def encode(images, quality, codec, effort, output, weights, device, max_pixels, force, quiet, jobs) -> None:
    """Encode IMAGES (PNG, JPEG, WebP, ...; - for stdin) to .lal files."""
    quality = FAMILIES[codec].parse_quality(quality)  # once, before any input is read or torch loaded
    _ready_output(output, images, ".lal data")
    from .codec import DEFAULT_MAX_PIXELS, encode_prepared
    from .image import open_image, prepare

    console = err if (output == "-" or "-" in images) else out

    def one(src: str) -> None:
        dest = _output_for(src, output, len(images) > 1, ".lal")
        if dest != "-" and Path(dest).exists() and not force:
            raise OutputExistsError(f"{dest} exists (use --force to overwrite)")
        img = open_image(sys.stdin.buffer.read(), name=_name(src)) if src == "-" else open_image(src)
        t0 = time.perf_counter()
        with _spinner(f"encoding {src}", quiet) as spinner:
            enc = encode_prepared(prepare(img), quality, weights=weights, device=device,
                                  max_pixels=max_pixels or DEFAULT_MAX_PIXELS, codec=codec, effort=effort,
                                  on_step=lambda i, n: spinner.update(f"encoding {src}: refining, step {i}/{n}"))
        dt = time.perf_counter() - t0
        _write(dest, enc.data, force)
        for note in enc.notes:
            console.print(f"note: {src}: {note}", markup=False)
        if quiet:
            return
        console.print(
            f"{src} -> {dest}  {enc.header.width}x{enc.header.height}  {len(enc.data):,} B  "
            f"{enc.bpp:.4f} bpp  q{quality:g}  {dt:.2f} s",
            markup=False,
        )

    _run_batch(list(images), one, console, jobs)


@main.command()
@click.argument("files", nargs=-1, required=True)
@click.option("-o", "--output", help="Output image (format from extension), folder, or - for stdout (PNG).")
@click.option("--weights", help="Weights name or checkpoint path (default: the ones the file names).")
@click.option("--device", type=DEVICE, default="auto", show_default=True)
@click.option("-f", "--force", is_flag=True, help="Overwrite existing outputs.")
@click.option("--quiet", is_flag=True, help="Print only errors (no progress, no summary).")
@JOBS
def decode(files, output, weights, device, force, quiet, jobs) -> None:
    """Decode .lal FILES to images (PNG by default)."""
    _ready_output(output, files, "PNG data")
    from .codec import decode as decode_lal

    console = err if (output == "-" or "-" in files) else out

    def one(src: str) -> None:
        dest = _output_for(src, output, len(files) > 1, ".png")
        if dest != "-" and Path(dest).exists() and not force:
            raise OutputExistsError(f"{dest} exists (use --force to overwrite)")
        data = sys.stdin.buffer.read() if src == "-" else _read(src)
        t0 = time.perf_counter()
        with _spinner(f"decoding {src}", quiet):
            dec = decode_lal(data, weights=weights, device=device)
        dt = time.perf_counter() - t0
        if dest == "-":
            import io

            buf = io.BytesIO()
            dec.image.save(buf, format="PNG", icc_profile=dec.image.info.get("icc_profile"))
            _write(dest, buf.getvalue(), force)
        else:
            fmt = _format_for(dest)
            _write(dest, lambda p: dec.image.save(p, format=fmt, **_save_options(dec.image, fmt)), force)
        if not quiet:
            console.print(f"{src} -> {dest}  {dec.header.width}x{dec.header.height}  {dt:.2f} s", markup=False)

    _run_batch(list(files), one, console, jobs)


def _read(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise errors.InputError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise errors.InputError(f"{path}: is a directory") from None


def _format_for(dest: str) -> str:
    from PIL import Image

    ext = Path(dest).suffix.lower()
    Image.preinit()  # the common formats, without importing every plugin (registered_extensions does)
    fmt = Image.EXTENSION.get(ext) or Image.registered_extensions().get(ext)
    if fmt is None:
        raise errors.InputError(f"{dest}: unknown image format {ext or '(no extension)'}")
    return fmt


def _save_options(img, fmt: str) -> dict:
    opts = {}
    if img.info.get("icc_profile") and fmt in ("PNG", "JPEG", "WEBP", "TIFF"):
        opts["icc_profile"] = img.info["icc_profile"]
    if fmt in ("JPEG", "WEBP"):
        opts["quality"] = 95
    return opts


@main.command()
@click.argument("file")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def info(file, as_json) -> None:
    """Show the header of a .lal FILE without decoding it."""
    from .bitstream import unpack

    data = sys.stdin.buffer.read() if file == "-" else _read(file)
    lal = unpack(data, max_pixels=None)
    h = lal.header
    grid, groups = FAMILIES[h.family].container.fields
    fields = {
        "file_size": len(data),
        "format_version": h.version,
        "family": h.family,
        "weights": h.weights_name,
        "weights_hash": h.weights_hash.hex(),
        "quality": h.quality,
        "width": h.width,
        "height": h.height,
        "mode": h.mode,
        "bit_depth": h.bit_depth,
        "pad": list(h.pad),
        grid: list(h.z_shape),
        groups: h.num_groups,
        "y_string_bytes": [len(s) for s in lal.y_strings],
        "z_string_bytes": len(lal.z_string),
        "extras": {k: len(v) for k, v in lal.extras.items()},
        "encoded_on": h.device_class,
        "entropy_path": h.entropy,
        "arithmetic": h.arithmetic if h.entropy == "exact" else None,
        "symbols_crc": f"{h.symbols_crc:08x}",
        "bpp": 8 * len(data) / (h.width * h.height),
    }
    if as_json:
        click.echo(json.dumps(fields, indent=2))
        return
    from rich.table import Table

    table = Table(show_header=False, box=None)
    for k, v in fields.items():
        table.add_row(k, f"{v:.4f}" if isinstance(v, float) and k == "bpp" else str(v))
    out.print(table)


@main.group()
def weights() -> None:
    """List and import model weights."""


@weights.command("list")
def weights_list() -> None:
    """Show known weights, whether each is available, and where it is looked for.

    On a terminal this is a table; piped, it is one tab-separated line per weights
    (a header line first, full paths), so that it neither wraps nor needs a table parser.
    """
    from .resources import data_dir
    from .zoo.registry import catalogue, weights_dir

    columns = ("name", "kind", "config", "quality", "lambda", "status")
    rows = [
        (e, (e.name, e.kind, e.config, "variable" if e.variable_rate else f"{e.quality:g}",
             f"{e.lmbda:g}" if e.lmbda else "", "available" if e.available else "missing"))
        for e in catalogue()
    ]
    if not out.is_terminal:
        click.echo("\t".join((*columns, "path")))
        for e, cells in rows:
            click.echo("\t".join((*cells, str(e.path or ""))))
        return
    from rich.table import Table

    table = Table(
        title=f"imported weights: {weights_dir()}\nbundled weights: {data_dir() / 'weights'}", title_justify="left"
    )
    for col in columns:
        table.add_column(col, no_wrap=True)
    table.add_column("file", overflow="fold")
    for e, cells in rows:
        colour = "green" if e.available else "red"
        table.add_row(*cells[:-1], f"[{colour}]{cells[-1]}[/]", e.path.name if e.path else "")
    out.print(table)


@weights.command("import")
@click.argument("checkpoint", type=click.Path(dir_okay=False, path_type=Path))
@click.option("-q", "--quality", type=click.IntRange(1, 6), required=True, help="Quality level of this checkpoint.")
@click.option("--name", help="Name to store it under (default lalic-mse-qN).")
@click.option("-f", "--force", is_flag=True, help="Replace weights already imported under that name.")
def weights_import(checkpoint, quality, name, force) -> None:
    """Verify an official-layout CHECKPOINT (.pth), fold OmniShift and store a compact copy."""
    from .zoo.registry import import_checkpoint

    if not checkpoint.is_file():
        raise errors.InputError(f"{checkpoint}: no such file")
    entry = import_checkpoint(checkpoint, quality, name=name, force=force)
    out.print(
        f"imported {checkpoint} as {entry.name} (config {entry.config}, quality {quality}) -> {entry.path}\n"
        f"sha256 {entry.sha256}",
        markup=False,
    )


def _rate_weights(_ctx, _param, value: str | None) -> tuple[float, ...] | None:
    if value is None:
        return None
    try:
        return tuple(float(v) for v in value.split(","))
    except ValueError:
        raise click.BadParameter(f"{value!r}: give comma-separated numbers, e.g. 1,1,1,1,1,2") from None


@main.command()
@click.option("--data", required=True, type=click.Path(file_okay=False), help="Folder of training images.")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Run folder (checkpoint, weights).")
@click.option("--codec", type=click.Choice(list(FAMILIES)), default=DEFAULT_FAMILY, show_default=True,
              help="Model family.")
@click.option("--stage", type=click.Choice(["tokenizer", "1", "2"]), default="2", show_default=True,
              help="MRT: tokenizer (VQ autoencoder), 1 (align with its codes) or 2 (end to end).")
@click.option("--config", "config_name",
              help="Model config (see configs registry).  [default: lite; mrt-small; vq-small for the tokenizer]")
@click.option("--lambda", "lmbda", type=float, help="Fixed-rate training at this lambda (LALIC).")
@click.option("--variable-rate", is_flag=True, help="One model for q1..q8 (gain units).")
@click.option("--rate-weights", callback=_rate_weights, metavar="W1,..,W8",
              help="Variable rate: relative frequency of q1..q8 in the batches (default: uniform).")
@click.option("--steps", type=click.IntRange(1), default=10000, show_default=True)
@click.option("--batch", type=click.IntRange(1), default=8, show_default=True)
@click.option("--patch", type=click.IntRange(64), help="Crop size.  [default: 128; MRT 256]")
@click.option("--lr", type=float, default=1e-4, show_default=True)
@click.option("--warmup", type=click.IntRange(0), default=0, show_default=True,
              help="Ramp lr linearly over this run's first N steps (worth it with --init: a fresh "
                   "optimiser's first updates move every weight by about lr).")
@click.option("--checkpoint-every", type=click.IntRange(1), default=500, show_default=True)
@click.option("--val-data", type=click.Path(file_okay=False), help="Held-out images for periodic validation.")
@click.option("--val-every", type=click.IntRange(1), default=500, show_default=True)
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--resume", type=click.Path(dir_okay=False), help="Checkpoint to continue from exactly.")
@click.option("--init", type=click.Path(dir_okay=False), help="Start from these weights (fresh optimiser).")
@click.option("--time-limit", type=click.FloatRange(min=1), help="Stop after this many seconds (checkpoint kept).")
@click.option("--tokenizer", type=click.Path(dir_okay=False), help="MRT stage 1: the tokenizer's weights.")
@click.option("--perceptual-weights", type=click.Path(dir_okay=False),
              help="MRT stage 2: a torchvision VGG16 state dict, for an LPIPS-style term.")
@click.option("--perceptual-weight", type=click.FloatRange(min=0), default=1.0, show_default=True,
              help="Weight of that term.")
@click.option("--precision", type=click.Choice(["float32", "bf16"]), default="float32", show_default=True,
              help="bf16: g_a and g_s under bf16 autocast while training (faster where the CPU has "
                   "AVX-512-BF16; see benchmarks/RESULTS.md). Validation and exports stay float32.")
@click.option("--ema", type=click.FloatRange(0, 1, max_open=True), default=0.0, show_default=True,
              help="Keep an exponential moving average of the weights with this decay (e.g. 0.999); "
                   "validation reports it beside the raw weights, and --export writes it.")
@click.option("--export", "export_name",
              help="After training, write weights NAME.safetensors into --out (with --ema also NAME-raw).")
@click.option("--export-dtype", type=click.Choice(["float32", "float16"]), default="float32", show_default=True,
              help="Precision of the exported weights (float16: the bundled weights' form, half the size).")
def train(codec, stage, config_name, lmbda, variable_rate, resume, export_name, export_dtype, patch, **kw) -> None:
    """Train on a folder of images: LALIC (lambda*255^2*MSE + bpp) or MRT (rate + MSE + MS-SSIM;
    two-stage training with --stage tokenizer, then 1, then 2 --init)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from .models import get_config
    from .training import Trainer, TrainConfig, recipe_for

    recipe = recipe_for(codec, stage)
    config_name = config_name or recipe.default_config
    try:
        get_config(config_name)
    except KeyError as e:
        raise errors.InputError(str(e.args[0])) from None
    cfg = TrainConfig(config=config_name, codec=codec, stage=stage, lmbda=lmbda, variable_rate=variable_rate,
                      patch=patch or recipe.default_patch, **kw)
    trainer = Trainer(cfg, resume=resume)
    columns = (TextColumn("train"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[stats]}"),
               TimeRemainingColumn())
    with Progress(*columns, console=err, disable=trainer.rank != 0) as bar:
        task = bar.add_task("train", total=cfg.steps, completed=trainer.step, stats="")

        def on_step(step: int, m: dict) -> None:
            if trainer.rank != 0:  # under torchrun one rank reports
                return
            shown = "  ".join(f"{k} {m[k]:{fmt}}" for k, fmt in recipe.shown)
            stats = f"{shown}  {m['steps_per_s']:.2f} it/s"
            if "val_psnr" in m:
                top = "".join(f"  {k[len('val_psnr_'):]}: bpp {m['val_bpp_' + k[len('val_psnr_'):]]:.4f} "
                              f"psnr {m[k]:.2f}" for k in m if k.startswith("val_psnr_"))
                bar.console.print(f"step {step}: val bpp {m['val_bpp']:.4f}  val psnr {m['val_psnr']:.2f}{top}")
            bar.update(task, completed=step, stats=stats)
            if not err.is_terminal and step % 25 == 0:
                bar.console.print(f"step {step}/{cfg.steps}: {stats}", markup=False)

        trainer.run(on_step)
    if export_name and trainer.rank == 0:
        import torch

        out.print(f"weights: {trainer.export_weights(export_name, getattr(torch, export_dtype))}", markup=False)
        if cfg.ema:
            raw = trainer.export_weights(f"{export_name}-raw", getattr(torch, export_dtype), averaged=False)
            out.print(f"weights without the average: {raw}", markup=False)


from .bench.command import bench  # noqa: E402

main.add_command(bench)


if __name__ == "__main__":
    main()
