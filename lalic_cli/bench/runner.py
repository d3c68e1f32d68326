"""Running the benchmark: every image at every quality of one model family, through the real codec
or the estimate, then the other codecs (``--vs`` and the family's comparisons) on the same images."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from ..effort import DEFAULT_EFFORT
from ..errors import InputError, LalicError
from ..families import DEFAULT_FAMILY
from . import classical
from .families import FAMILIES, LEARNED, Family, LearnedPoint
from .metrics import ideal_bits, measure, tensor_to_rgb8, to_rgb8

DEFAULT_QUALITIES = FAMILIES[DEFAULT_FAMILY].qualities

#: a row of the other codecs' tables: a Pillow codec or another learned family at one quality
Comparison = classical.ClassicalCodec | LearnedPoint


def comparison(key: str) -> Comparison:
    """The other codec named ``key`` (``--vs`` names and the families' comparison keys)."""
    return classical.CODECS.get(key) or LEARNED[key]


@dataclass
class Settings:
    qualities: tuple[float, ...] = DEFAULT_QUALITIES
    weights: str | None = None
    device: str = "auto"
    estimate: bool = False
    vs: tuple[str, ...] = ()  # other codecs: classical.CODECS and families.LEARNED keys
    codec: str = DEFAULT_FAMILY  # the family benchmarked (families.FAMILIES key)
    picture: bool = False  # keep one image's reconstructions, for the side-by-side picture
    picture_image: str | None = None  # its file name; None: the first readable image
    effort: int = DEFAULT_EFFORT  # above the default, the encoder refines the latents

    @property
    def family(self) -> Family:
        return FAMILIES[self.codec]


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
    vs: dict[str, list[dict]] = field(default_factory=dict)  # other codec key -> one per (image, level)
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # other codecs skipped, and why: shown with the tables
    picture_image: str | None = None
    # the picture image's original ("original", 0) and reconstructions, (codec key, quality) -> H x W x 3 uint8
    kept: dict[tuple[str, float], np.ndarray] = field(default_factory=dict)


class _Loaded:
    def __init__(self, path: Path):
        from ..image import open_image, prepare

        self.name = path.name
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


def available_qualities(weights: str | None, wanted=DEFAULT_QUALITIES, codec: str = DEFAULT_FAMILY) -> list[float]:
    """The qualities among ``wanted`` that ``codec``'s weights (``weights`` or the default) code."""
    family = FAMILIES[codec]
    found = []
    for q in wanted:
        try:
            family.resolve(weights, q)
        except LalicError:
            continue
        found.append(q)
    return found


def _decode_weights(weights: str | None) -> str | None:
    # A weights file given by path must be given to the decoder too; names are found from the header.
    return weights if weights and Path(weights).expanduser().is_file() else None


def code_learned(img: _Loaded, quality: float, weights: str | None, device: str, family: str,
                 effort: int = DEFAULT_EFFORT):
    """Encode and decode one image with a learned family: ``(Encoded, reconstruction, enc s, dec s)``."""
    from ..codec import decode, encode_prepared

    t0 = time.perf_counter()
    enc = encode_prepared(img.prepared, quality, weights=weights, device=device, max_pixels=None, codec=family,
                          effort=effort)
    _sync(device)
    t1 = time.perf_counter()
    dec = decode(enc.data, weights=_decode_weights(weights), device=device, max_pixels=None)
    _sync(device)
    t2 = time.perf_counter()
    return enc, to_rgb8(dec.image), t1 - t0, t2 - t1


class Runner:
    """Holds the settings and the progress bar; :meth:`run` does the work."""

    def __init__(self, settings: Settings, progress=None, warn: Callable[[str], None] | None = None):
        from ..codec import pick_device

        self.settings = settings
        self.device = pick_device(settings.device)
        self.progress = progress  # a rich.progress.Progress, or None
        self._warn = warn or (lambda msg: None)
        self.result = Result(settings, self.device)
        # how each kind of other codec codes one image at one level
        self._coders: dict[type, Callable[[Comparison, _Loaded, float], classical.Coded]] = {
            classical.ClassicalCodec: lambda c, img, level: classical.code_image(c, img.rgb8, int(level)),
            LearnedPoint: self._code_point,
        }

    def warn(self, message: str) -> None:
        self.result.warnings.append(message)
        self._warn(message)

    def note(self, message: str) -> None:
        """Something the tables should say (an other codec skipped), not a problem with the run."""
        self.result.notes.append(message)

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
        if self.settings.picture:
            wanted = self.settings.picture_image or good[0].name
            if wanted not in self.result.images:
                raise InputError(f"--picture-image {wanted}: not among the images benchmarked")
            self.result.picture_image = wanted
        return good

    def _skip(self, path: Path, reason: str) -> None:
        reason = reason.removeprefix(f"{path}: ")
        self.result.skipped.append((path.name, reason))
        self.warn(f"{path.name}: skipped: {reason}")

    def _keep(self, img: _Loaded, key: str, quality: float, reconstruction: np.ndarray) -> None:
        if img.name == self.result.picture_image:
            self.result.kept.setdefault(("original", 0.0), img.rgb8)
            self.result.kept[(key, float(quality))] = reconstruction

    # --- the learned codec ------------------------------------------------
    def _code(self, img: _Loaded, quality: float) -> dict:
        from ..bitstream import unpack

        s = self.settings
        enc, rec, t_enc, t_dec = code_learned(img, quality, s.weights, self.device, s.codec, s.effort)
        lal = unpack(enc.data)
        strings = sum(len(y) for y in lal.y_strings) + len(lal.z_string)
        self.result.weights[quality] = enc.entry.name
        self.result.weights_metric = enc.entry.metric
        self._keep(img, s.codec, quality, rec)
        return {
            "bytes": len(enc.data),
            "bpp": 8 * len(enc.data) / img.pixels,
            "bpp-strings": 8 * strings / img.pixels,
            **measure(img.rgb8, rec),
            "encoding_time": t_enc,
            "decoding_time": t_dec,
        }

    def _estimate(self, img: _Loaded, quality: float) -> dict:
        import torch

        from ..codec import pad_to
        from ..zoo.registry import load_model

        entry = self.settings.family.resolve(self.settings.weights, quality)
        model, _ = load_model(entry, self.device)
        self.result.weights[quality] = entry.name
        self.result.weights_metric = entry.metric
        t0 = time.perf_counter()
        x, (left, _, top, _) = pad_to(img.prepared.rgb.to(self.device), model.downsampling_factor)
        with torch.inference_mode():
            out = model(x, quality)
        _sync(self.device)
        t1 = time.perf_counter()
        bits = ideal_bits(out["likelihoods"])
        h, w = img.prepared.height, img.prepared.width
        rec = tensor_to_rgb8(out["x_hat"][..., top: top + h, left: left + w])
        self._keep(img, self.settings.codec, quality, rec)
        return {
            "bytes": math.nan,
            "bpp": bits / img.pixels,
            "bpp-strings": bits / img.pixels,
            **measure(img.rgb8, rec),
            "encoding_time": t1 - t0,
            "decoding_time": math.nan,
        }

    def run_learned(self, paths: list[Path]) -> None:
        s = self.settings
        one = self._estimate if s.estimate else self._code
        task = self._task(s.family.label + (" (estimate)" if s.estimate else ""), len(paths) * len(s.qualities))
        for q in s.qualities:
            one(_Loaded(paths[0]), q)  # warm-up (model load, kernels, allocator), not timed
            if self.device == "cuda":
                import torch

                torch.cuda.reset_peak_memory_stats()
            for p in paths:
                img = _Loaded(p)
                rec = {"codec": s.codec, "image": p.name, "quality": q,
                       "width": img.prepared.width, "height": img.prepared.height}
                rec.update(one(img, q))
                self.result.records.append(rec)
                self._advance(task)
            self.result.peak_memory_mb[q] = _peak_memory_mb(self.device)

    # --- the other codecs -------------------------------------------------
    def _code_point(self, point: LearnedPoint, img: _Loaded, quality: float) -> classical.Coded:
        enc, rec, t_enc, t_dec = code_learned(img, quality, None, self.device, point.family)
        return classical.Coded(len(enc.data), rec, t_enc, t_dec)

    def usable_others(self) -> list[Comparison]:
        """The other codecs that can run here; a note for each one that cannot."""
        keys = list(self.settings.vs)
        ok, notes = classical.usable([k for k in keys if k in classical.CODECS])
        for key in (k for k in keys if k in LEARNED):
            point = LEARNED[key]
            try:
                FAMILIES[point.family].resolve(None, point.quality)
            except LalicError as e:
                notes.append(f"{key} skipped: {e}")
                continue
            ok.append(key)
        for n in notes:
            self.note(n)
        return [comparison(k) for k in keys if k in ok]

    def run_others(self, paths: list[Path]) -> None:
        """Every other codec at each of its levels on every image; bpp over the original's pixels."""
        codecs = self.usable_others()
        if not codecs:
            return
        task = self._task("other codecs", len(paths) * sum(len(c.levels) for c in codecs))
        first = _Loaded(paths[0])
        for c in codecs:
            self.result.vs[c.key] = []
            if isinstance(c, LearnedPoint):  # warm-up (model load, kernels), not timed
                self._code_point(c, first, c.quality)
        for p in paths:
            img = _Loaded(p)
            for c in codecs:
                for level in c.levels:
                    coded = self._coders[type(c)](c, img, level)
                    self._keep(img, c.key, level, coded.reconstruction)
                    self.result.vs[c.key].append({
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
        self.run_learned(good)
        self.run_others(good)
        return self.result


def run(paths: list[Path], settings: Settings, progress=None, warn=None) -> Result:
    """Benchmark ``paths`` (unreadable ones skipped) with ``settings``."""
    return Runner(settings, progress, warn).run(paths)


__all__ = ["DEFAULT_QUALITIES", "Comparison", "Settings", "Result", "Runner", "run",
           "comparison", "code_learned", "available_qualities"]
