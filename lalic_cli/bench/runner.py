"""Running the benchmark: every image at every quality, through the real codec or the estimate."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable


from ..errors import InputError, LalicError
from . import classical
from .metrics import measure, tensor_to_rgb8, to_rgb8

IMAGE_EXTENSIONS = frozenset(
    ".png .jpg .jpeg .jpe .webp .avif .bmp .tif .tiff .ppm .pgm .pnm .pbm .gif .tga .jp2 .j2k".split()
)
DEFAULT_QUALITIES = (1.0, 2.0, 3.0, 4.0, 5.0, 6.0)


def list_images(folder: str | Path, limit: int | None = None) -> list[Path]:
    """Image files (by extension) directly in ``folder``, sorted by name, the first ``limit`` of them.

    A single image file is accepted too.
    """
    folder = Path(folder)
    if folder.is_file():
        return [folder]
    if not folder.is_dir():
        raise InputError(f"{folder}: no such folder")
    files = sorted(
        (p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()),
        key=lambda p: p.name,
    )
    if not files:
        raise InputError(f"{folder}: no image files (PNG, JPEG, WebP, ...) in this folder")
    return files[:limit] if limit else files


@dataclass
class Settings:
    qualities: tuple[float, ...] = DEFAULT_QUALITIES
    weights: str | None = None
    device: str = "auto"
    estimate: bool = False
    vs: tuple[str, ...] = ()  # classical codec keys


@dataclass
class Result:
    """Everything measured; records are flat dicts keyed like the JSON output."""

    settings: Settings
    device: str
    images: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    records: list[dict] = field(default_factory=list)  # this codec, one per (image, quality)
    peak_memory_mb: dict[float, float] = field(default_factory=dict)
    weights: dict[float, str] = field(default_factory=dict)  # quality -> weights name
    weights_metric: str = "mse"
    classical: dict[str, list[dict]] = field(default_factory=dict)  # key -> one per (image, level)
    warnings: list[str] = field(default_factory=list)


class _Loaded:
    def __init__(self, path: Path):
        from ..image import open_image, prepare

        self.prepared = prepare(open_image(path))
        self.rgb8 = tensor_to_rgb8(self.prepared.rgb)

    @property
    def pixels(self) -> int:
        return self.prepared.height * self.prepared.width


def _sync(device: str) -> None:
    if device == "cuda":
        import torch

        torch.cuda.synchronize()


def _peak_memory_mb(device: str) -> float:
    if device == "cuda":
        import torch

        return torch.cuda.max_memory_allocated() / 2**20
    from ..memory import peak_rss_bytes

    return peak_rss_bytes() / 2**20


def available_qualities(weights: str | None, wanted=DEFAULT_QUALITIES) -> list[float]:
    """The qualities among ``wanted`` that have weights installed."""
    from ..zoo.registry import resolve

    found = []
    for q in wanted:
        try:
            resolve(weights, q)
        except LalicError:
            continue
        found.append(q)
    return found


class Runner:
    """Holds the settings and the progress bar; :meth:`run` does the work."""

    def __init__(self, settings: Settings, progress=None, warn: Callable[[str], None] | None = None):
        from ..codec import pick_device

        self.settings = settings
        self.device = pick_device(settings.device)
        self.progress = progress  # a rich.progress.Progress, or None
        self._warn = warn or (lambda msg: None)
        self.result = Result(settings, self.device)

    def warn(self, message: str) -> None:
        self.result.warnings.append(message)
        self._warn(message)

    # --- the images -------------------------------------------------------
    def scan(self, paths: list[Path]) -> list[Path]:
        """The readable images; the others are skipped with a warning."""
        from ..codec import DEFAULT_MAX_PIXELS

        good = []
        for p in paths:
            try:
                loaded = _Loaded(p)
            except (LalicError, OSError, ValueError) as e:
                self._skip(p, str(e))
                continue
            if loaded.pixels > DEFAULT_MAX_PIXELS:
                self._skip(p, f"{loaded.pixels} pixels, over the limit of {DEFAULT_MAX_PIXELS}")
                continue
            good.append(p)
        if not good:
            raise InputError("no readable images to benchmark")
        self.result.images = [p.name for p in good]
        return good

    def _skip(self, path: Path, reason: str) -> None:
        reason = reason.removeprefix(f"{path}: ")
        self.result.skipped.append((path.name, reason))
        self.warn(f"{path.name}: skipped: {reason}")

    # --- the learned codec ------------------------------------------------
    def _code(self, img: _Loaded, quality: float) -> dict:
        from ..bitstream import unpack
        from ..codec import decode, encode_prepared

        s = self.settings
        t0 = time.perf_counter()
        enc = encode_prepared(img.prepared, quality, weights=s.weights, device=self.device, max_pixels=None)
        _sync(self.device)
        t1 = time.perf_counter()
        dec = decode(enc.data, weights=self._decode_weights, device=self.device, max_pixels=None)
        _sync(self.device)
        t2 = time.perf_counter()
        lal = unpack(enc.data)
        strings = sum(len(y) for y in lal.y_strings) + len(lal.z_string)
        self.result.weights[quality] = enc.entry.name
        self.result.weights_metric = enc.entry.metric
        return {
            "bytes": len(enc.data),
            "bpp": 8 * len(enc.data) / img.pixels,
            "bpp-strings": 8 * strings / img.pixels,
            **measure(img.rgb8, to_rgb8(dec.image)),
            "encoding_time": t1 - t0,
            "decoding_time": t2 - t1,
        }

    def _estimate(self, img: _Loaded, quality: float) -> dict:
        import torch

        from ..codec import pad_to
        from ..zoo.registry import load_model, resolve

        entry = resolve(self.settings.weights, quality)
        model, _ = load_model(entry, self.device)
        self.result.weights[quality] = entry.name
        self.result.weights_metric = entry.metric
        t0 = time.perf_counter()
        x, (left, _, top, _) = pad_to(img.prepared.rgb.to(self.device), model.downsampling_factor)
        with torch.inference_mode():
            out = model(x, quality)
        _sync(self.device)
        t1 = time.perf_counter()
        bits = sum(float(-torch.log2(lk.double()).sum()) for lk in _tensors(out["likelihoods"]))
        h, w = img.prepared.height, img.prepared.width
        x_hat = out["x_hat"][..., top: top + h, left: left + w]
        return {
            "bytes": math.nan,
            "bpp": bits / img.pixels,
            "bpp-strings": bits / img.pixels,
            **measure(img.rgb8, tensor_to_rgb8(x_hat)),
            "encoding_time": t1 - t0,
            "decoding_time": math.nan,
        }

    @property
    def _decode_weights(self) -> str | None:
        # A weights file given by path must be given to the decoder too; names are found from the header.
        w = self.settings.weights
        return w if w and Path(w).expanduser().is_file() else None

    def run_lalic(self, paths: list[Path]) -> None:
        s = self.settings
        one = self._estimate if s.estimate else self._code
        task = self._task("LALIC" + (" (estimate)" if s.estimate else ""), len(paths) * len(s.qualities))
        for q in s.qualities:
            one(_Loaded(paths[0]), q)  # warm-up (model load, kernels, allocator), not timed
            if self.device == "cuda":
                import torch

                torch.cuda.reset_peak_memory_stats()
            for p in paths:
                img = _Loaded(p)
                rec = {"codec": "lalic", "image": p.name, "quality": q,
                       "width": img.prepared.width, "height": img.prepared.height}
                rec.update(one(img, q))
                self.result.records.append(rec)
                self._advance(task)
            self.result.peak_memory_mb[q] = _peak_memory_mb(self.device)

    # --- classical codecs -------------------------------------------------
    def run_classical(self, paths: list[Path]) -> None:
        keys, warnings = classical.usable(list(self.settings.vs))
        for w in warnings:
            self.warn(w)
        if not keys:
            return
        codecs = [classical.CODECS[k] for k in keys]
        task = self._task("classical codecs", len(paths) * sum(len(c.levels) for c in codecs))
        for c in codecs:
            self.result.classical[c.key] = []
        for p in paths:
            img = _Loaded(p)
            for c in codecs:
                for level in c.levels:
                    coded = classical.code_image(c, img.rgb8, level)
                    self.result.classical[c.key].append({
                        "codec": c.key, "image": p.name, "quality": level,
                        "width": img.prepared.width, "height": img.prepared.height,
                        "bytes": coded.nbytes,
                        "bpp": 8 * coded.nbytes / img.pixels,
                        **measure(img.rgb8, coded.reconstruction),
                        "encoding_time": coded.encoding_time,
                        "decoding_time": coded.decoding_time,
                    })
                    self._advance(task)

    # --- progress ---------------------------------------------------------
    def _task(self, label: str, total: int):
        return None if self.progress is None else self.progress.add_task(label, total=total)

    def _advance(self, task) -> None:
        if self.progress is not None:
            self.progress.advance(task)

    def run(self, paths: list[Path]) -> Result:
        good = self.scan(paths)
        self.run_lalic(good)
        self.run_classical(good)
        return self.result


def _tensors(obj):
    """Every tensor in a (possibly nested) dict / list of likelihoods."""
    if isinstance(obj, dict):
        for v in obj.values():
            yield from _tensors(v)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            yield from _tensors(v)
    else:
        yield obj


def run(paths: list[Path], settings: Settings, progress=None, warn=None) -> Result:
    """Benchmark ``paths`` (unreadable ones skipped) with ``settings``."""
    return Runner(settings, progress, warn).run(paths)


__all__ = ["IMAGE_EXTENSIONS", "DEFAULT_QUALITIES", "Settings", "Result", "Runner", "run",
           "list_images", "available_qualities"]
