"""Summaries of a benchmark run: averages, BD-rates, rich tables, JSON, CSV and an R-D plot."""

from __future__ import annotations

import csv
import importlib.resources
import io
import json
import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from ..fileio import atomic_write
from .bdrate import BDRate, bd_rate, quality_margins
from .metrics import MS_SSIM_MIN_SIDE, mean, ms_ssim_db
from .runner import Result, comparison

METRICS = ("psnr-rgb", "ms-ssim-rgb-db")
METRIC_LABELS = {"psnr-rgb": "PSNR", "ms-ssim-rgb-db": "MS-SSIM"}
AVERAGED = ("bpp", "bpp-strings", "psnr-rgb", "ms-ssim-rgb", "ms-ssim-rgb-db", "encoding_time", "decoding_time")

VTM_LABEL = "VTM-9.1"
PAPER_LABEL = "LALIC (paper)"
KODAK_IMAGES = 24  # the anchors (VTM, the paper) average all of Kodak


# --- anchors ------------------------------------------------------------------
@lru_cache(maxsize=None)
def load_anchor(filename: str) -> dict:
    """A CompressAI-layout JSON file shipped in ``lalic_cli/anchors``."""
    text = importlib.resources.files("lalic_cli").joinpath("anchors", filename).read_text("utf-8")
    return json.loads(text)


def normalise(results: dict) -> dict:
    """Results with the key names used here (``psnr`` -> ``psnr-rgb``, MS-SSIM in dB added)."""
    out = dict(results)
    for old, new in (("psnr", "psnr-rgb"), ("ms-ssim", "ms-ssim-rgb"), ("ms-ssim-db", "ms-ssim-rgb-db")):
        if old in out and new not in out:
            out[new] = out[old]
    if "ms-ssim-rgb" in out and "ms-ssim-rgb-db" not in out:
        out["ms-ssim-rgb-db"] = [ms_ssim_db(v) for v in out["ms-ssim-rgb"]]
    return out


@dataclass
class Curve:
    """One codec's R-D points per metric: ``{metric: (bpp list, quality list)}``."""

    key: str
    label: str
    points: dict[str, tuple[list[float], list[float]]]

    @classmethod
    def from_results(cls, key: str, label: str, results: dict, rate_key: str = "bpp") -> "Curve":
        r = normalise(results)
        pts = {m: (list(r[rate_key]), list(r[m])) for m in METRICS if m in r and rate_key in r}
        return cls(key, label, pts)


def vtm_curve() -> Curve:
    psnr = normalise(load_anchor("kodak-vtm91-compressai.json")["results"])
    msssim = normalise(load_anchor("kodak-vtm91-msssim.json")["results"])
    return Curve("vtm", VTM_LABEL, {
        "psnr-rgb": (psnr["bpp"], psnr["psnr-rgb"]),
        "ms-ssim-rgb-db": (msssim["bpp"], msssim["ms-ssim-rgb-db"]),
    })


def paper_curve(metric: str = "mse") -> Curve:
    """The paper's Kodak points for the model trained for ``metric`` (the MSE model has no MS-SSIM points)."""
    if metric.replace("-", "").replace("_", "").lower() == "msssim":
        r = normalise(load_anchor("kodak-lalic-msssim.json")["results"])
        return Curve("paper", "LALIC (paper, MS-SSIM model)", {m: (r["bpp"], r[m]) for m in METRICS})
    r = normalise(load_anchor("kodak-lalic.json")["results"])
    return Curve("paper", PAPER_LABEL, {"psnr-rgb": (r["bpp"], r["psnr-rgb"])})


# --- averages -----------------------------------------------------------------
def summarise(records: list[dict]) -> dict:
    """CompressAI-style ``results``: one entry per quality (ascending), each the mean over images.

    MS-SSIM averages skip images too small for it; MS-SSIM in dB is the mean of per-image dB values,
    as in the VTM anchor.
    """
    qualities = sorted({r["quality"] for r in records})
    out: dict[str, list] = {"quality": qualities}
    keys = [k for k in AVERAGED if any(k in r for r in records)]
    for k in keys:
        out[k] = [mean(r.get(k, math.nan) for r in records if r["quality"] == q) for q in qualities]
    out["images"] = [sum(1 for r in records if r["quality"] == q) for q in qualities]
    return out


# --- the report -----------------------------------------------------------------
@dataclass
class BDEntry:
    test: str  # curve label
    anchor: str
    metric: str
    value: BDRate

    def as_dict(self) -> dict:
        return {"test": self.test, "anchor": self.anchor, "metric": self.metric,
                "percent": _finite(self.value.percent), "reason": self.value.reason}


class Report:
    def __init__(self, result: Result, description: str = ""):
        self.result = result
        self.family = result.settings.family
        self.estimate = result.settings.estimate
        self.description = description
        self.results = summarise(result.records)
        self.results["peak_memory_mb"] = [result.peak_memory_mb.get(q, math.nan) for q in self.results["quality"]]
        self.others = {k: summarise(recs) for k, recs in result.vs.items()}

        run_label = f"{self.family.label} (this run)"
        self.run_curve = Curve.from_results(
            "run", f"{self.family.label} (estimated)" if self.estimate else run_label, self.results)
        self.strings_curve = None if self.estimate else Curve.from_results(
            "run-strings", run_label + ", strings only", self.results, "bpp-strings")
        self.vtm = vtm_curve()
        self.paper = paper_curve(result.weights_metric)
        self.codec_curves = [Curve.from_results(k, comparison(k).label, r) for k, r in self.others.items()]
        self.bd = self._bd_rates() if self.family.anchors else []

    @property
    def bd_note(self) -> str | None:
        """Why there are no BD-rates (this family's rates lie below every anchor point), or None."""
        if self.family.anchors:
            return None
        lowest = min(self.vtm.points["psnr-rgb"][0])
        return (f"not computed: {self.family.label}'s rates lie below the anchors' (VTM's lowest Kodak point is "
                f"{lowest:.3f} bpp) and a BD-rate would extrapolate")

    @property
    def name(self) -> str:
        return self.run_curve.label

    def _bd_rates(self) -> list[BDEntry]:
        pairs: list[tuple[Curve, Curve]] = []
        for run in filter(None, (self.run_curve, self.strings_curve)):
            pairs += [(run, self.vtm), (run, self.paper)]
        for c in self.codec_curves:
            pairs += [(c, self.vtm), (c, self.run_curve)]
        out = []
        for test, anchor in pairs:
            for m in METRICS:
                if m not in test.points or m not in anchor.points:  # not applicable (e.g. no MS-SSIM anchor)
                    continue
                if m == "ms-ssim-rgb-db" and not all(any(map(_is_finite, c.points[m][1])) for c in (test, anchor)):
                    value = BDRate(math.nan, f"no MS-SSIM values (images need {MS_SSIM_MIN_SIDE} px on each side)")
                else:
                    value = bd_rate(*anchor.points[m], *test.points[m])
                out.append(BDEntry(test.label, anchor.label, m, value))
        return out

    def margins(self) -> list[dict]:
        """This run's quality minus every other codec's, at that codec's settings inside this
        run's rate range, per metric."""
        out = []
        for c, key in zip(self.codec_curves, self.others):
            for i, q in enumerate(self.others[key]["quality"]):
                row = {"codec": c.label, "setting": q}
                for m in METRICS:
                    if m not in c.points or m not in self.run_curve.points:
                        continue
                    rates, values = c.points[m]
                    hit = quality_margins([rates[i]], [values[i]], *self.run_curve.points[m])
                    if hit:
                        row["bpp"], row[m] = hit[0].rate, hit[0].margin
                if "bpp" in row:
                    out.append(row)
        return out

    # --- JSON / CSV ---------------------------------------------------------------
    def to_json(self, per_image: bool = False) -> dict:
        res = self.result
        doc = {
            "name": self.name,
            "codec": self.family.key,
            "description": self.description,
            "estimate": self.estimate,
            "device": res.device,
            "weights": {f"{q:g}": name for q, name in sorted(res.weights.items())},
            "images": res.images,
            "skipped": [{"image": n, "reason": why} for n, why in res.skipped],
            "results": self.results,
            "bd-rate": [e.as_dict() for e in self.bd],
        }
        if self.bd_note:
            doc["bd-rate-note"] = self.bd_note
        if self.others:
            doc["vs"] = {
                k: {"name": comparison(k).label, "description": comparison(k).description, "results": r}
                for k, r in self.others.items()
            }
            if self.family.anchors:
                doc["margins"] = self.margins()
        if res.notes:
            doc["notes"] = res.notes
        if per_image:
            doc["per-image"] = res.records
            if self.others:
                doc["vs-per-image"] = {k: recs for k, recs in res.vs.items()}
        return _finite(doc)

    def write_json(self, path: str | Path, per_image: bool = False) -> None:
        text = json.dumps(self.to_json(per_image), indent=2, allow_nan=False) + "\n"
        atomic_write(path, text.encode("utf-8"), force=True)

    CSV_FIELDS = ("codec", "image", "quality", "width", "height", "bytes", "bpp", "bpp-strings", "psnr-rgb",
                  "ms-ssim-rgb", "ms-ssim-rgb-db", "encoding_time", "decoding_time", "estimate")

    def csv_rows(self, per_image: bool = False) -> list[dict]:
        rows: list[dict] = []
        if per_image:
            for r in self.result.records:
                rows.append({**r, "estimate": self.estimate})
            for recs in self.result.vs.values():
                rows.extend(recs)
            return rows
        for codec, results, est in ((self.family.key, self.results, self.estimate),
                                    *((k, r, False) for k, r in self.others.items())):
            for i, q in enumerate(results["quality"]):
                row = {"codec": codec, "image": "(mean)", "quality": q, "estimate": est}
                row.update({k: results[k][i] for k in AVERAGED if k in results})
                rows.append(row)
        return rows

    def write_csv(self, path: str | Path, per_image: bool = False) -> None:
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=self.CSV_FIELDS, extrasaction="ignore", lineterminator="\n")
        w.writeheader()
        for row in self.csv_rows(per_image):
            w.writerow({k: _csv_value(row.get(k)) for k in self.CSV_FIELDS})
        atomic_write(path, buf.getvalue().encode("utf-8"), force=True)

    # --- plot ----------------------------------------------------------------------
    def figure(self):
        """The R-D curves, PSNR and MS-SSIM side by side, as a matplotlib Figure.

        The anchors are full-Kodak results whatever was benchmarked, so the legend says so beside
        the run's image count. The strings-only curve lies just left of the run's, under it when
        drawn alike, so it is dashed, hollow-marked and on top."""
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        fig = Figure(figsize=(12, 4.8), layout="constrained")
        FigureCanvasAgg(fig)
        axes = fig.subplots(1, 2)
        anchor = f", anchor: full Kodak ({KODAK_IMAGES} images)"
        n = len(self.result.images)
        images = f", {n} image{'' if n == 1 else 's'}"
        # MRT's points would sit squashed in the corner of the anchors' axes: no anchors then
        curves = [(self.vtm, anchor, dict(color="k", linestyle="--", marker="s")),
                  (self.paper, anchor, dict(color="C0", linestyle=":", marker="^"))] if self.family.anchors else []
        curves.append((self.run_curve, images, dict(color="C3", linestyle="-", marker="o")))
        if self.strings_curve is not None:
            curves.append((self.strings_curve, images, dict(color="C1", linestyle=(0, (4, 2)), marker="D",
                                                            markersize=7, markerfacecolor="none", zorder=3)))
        curves += [(c, "", dict(color=f"C{i % 8 + 4}", linestyle="-", marker="x"))
                   for i, c in enumerate(self.codec_curves)]
        for ax, m in zip(axes, METRICS):
            for curve, suffix, style in curves:
                if m not in curve.points:
                    continue
                pts = sorted((b, v) for b, v in zip(*curve.points[m]) if _is_finite(b) and _is_finite(v))
                if pts:
                    xs, ys = zip(*pts)
                    ax.plot(xs, ys, label=curve.label + suffix, **{"markersize": 4, **style})
            ax.set_xlabel("bits per pixel")
            ax.set_ylabel("PSNR (dB)" if m == "psnr-rgb" else "MS-SSIM (dB)")
            ax.set_title(f"{METRIC_LABELS[m]} vs rate")
            ax.grid(True, alpha=0.3)
            ax.legend(fontsize=8)
        return fig

    def write_plot(self, path: str | Path) -> None:
        fmt = Path(path).suffix.lstrip(".").lower() or "png"
        fig = self.figure()
        atomic_write(path, lambda tmp: fig.savefig(tmp, format=fmt, dpi=120), force=True)

    # --- tables ----------------------------------------------------------------------
    def render(self, console) -> None:
        from rich import box
        from rich.table import Table

        est = self.estimate
        title = f"{self.family.label}, this run" + (" (estimated: bpp from likelihoods, no coding)" if est else "")
        t = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD)
        for col in ("q", "bpp\n(est.)" if est else "bpp", "strings\nbpp", "PSNR", "MS-SSIM", "MS-SSIM\ndB",
                    "fwd\nms" if est else "enc\nms", "dec\nms", "peak\nMB"):
            t.add_column(col, justify="right")
        r = self.results
        for i, q in enumerate(r["quality"]):
            t.add_row(
                f"{q:g}", _f(r["bpp"][i], 4), "—" if est else _f(r["bpp-strings"][i], 4),
                _f(r["psnr-rgb"][i], 2), _f(r["ms-ssim-rgb"][i], 4), _f(r["ms-ssim-rgb-db"][i], 2),
                _f(1e3 * r["encoding_time"][i], 1), "—" if est else _f(1e3 * r["decoding_time"][i], 1),
                _f(r["peak_memory_mb"][i], 0),
            )
        console.print(t)
        self.render_others(console)
        self.render_bd(console)
        self.render_margins(console)

    def render_others(self, console) -> None:
        """One table for every other codec (``--vs`` and the family's comparisons), then the notes."""
        from rich import box
        from rich.table import Table

        if self.others:
            t = Table(title="Other codecs on the same images (bpp over the original's pixels, downscaled ones too)",
                      title_justify="left", box=box.SIMPLE_HEAD)
            for col in ("codec", "setting", "bpp", "PSNR", "MS-SSIM", "MS-SSIM\ndB", "enc\nms", "dec\nms"):
                t.add_column(col, justify="left" if col == "codec" else "right", no_wrap=col == "codec")
            for key, res in self.others.items():
                label = comparison(key).label
                n = len(res["quality"])
                for i, q in enumerate(res["quality"]):
                    t.add_row(label if i == 0 else "", f"{q:g}", _f(res["bpp"][i], 4), _f(res["psnr-rgb"][i], 2),
                              _f(res["ms-ssim-rgb"][i], 4), _f(res["ms-ssim-rgb-db"][i], 2),
                              _f(1e3 * res["encoding_time"][i], 1), _f(1e3 * res["decoding_time"][i], 1),
                              end_section=n > 1 and i == n - 1)
            console.print(t)
        for note in self.result.notes:
            console.print(f"  note: {note}", markup=False, style="dim")

    def render_bd(self, console) -> None:
        from rich import box
        from rich.table import Table

        if self.bd_note:
            console.print(f"BD-rate: n/a, {self.bd_note}", markup=False)
            return
        t = Table(title="BD-rate (negative: fewer bits than the anchor for the same quality)", title_justify="left",
                  box=box.SIMPLE_HEAD)
        for col in ("codec", "anchor", *(METRIC_LABELS[m] for m in METRICS)):
            t.add_column(col, justify="left" if col in ("codec", "anchor") else "right")
        notes: list[str] = []
        pairs = list(dict.fromkeys((e.test, e.anchor) for e in self.bd))
        for test, anchor in pairs:
            cells = []
            for m in METRICS:
                e = next((e for e in self.bd if (e.test, e.anchor, e.metric) == (test, anchor, m)), None)
                if e is None:
                    cells.append("—")  # not applicable: no points for this metric
                    continue
                cells.append(e.value.format())
                if not e.value.ok:
                    notes.append(f"{test} vs {anchor}, {METRIC_LABELS[m]}: {e.value.reason}")
            t.add_row(test, anchor, *cells)
        console.print(t)
        for note in notes:
            console.print(f"  n/a: {note}", markup=False, style="dim")
        console.print("  (the anchors are Kodak results: they compare like with like only on the Kodak images)",
                      markup=False, style="dim")

    def render_margins(self, console) -> None:
        from rich import box
        from rich.table import Table

        rows = self.margins() if self.others and self.family.anchors else []
        if not rows:
            return
        t = Table(title=f"{self.run_curve.label} minus each codec at that codec's rates (dB; positive: this run "
                        "leads; its curve interpolated in log-rate)", title_justify="left", box=box.SIMPLE_HEAD)
        for col in ("codec", "setting", "bpp", *(METRIC_LABELS[m] for m in METRICS)):
            t.add_column(col, justify="left" if col == "codec" else "right", no_wrap=col == "codec")
        last = None
        for row in rows:
            t.add_row(row["codec"] if row["codec"] != last else "", f"{row['setting']:g}", _f(row["bpp"], 4),
                      *(f"{row[m]:+.2f}" if _is_finite(row.get(m)) else "—" for m in METRICS))
            last = row["codec"]
        console.print(t)
        console.print("  (settings outside this run's rate range are left out: no extrapolation)",
                      markup=False, style="dim")


def _is_finite(v) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v)


def _finite(obj):
    """NaN and infinities become null, recursively, so the JSON is standard."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def _csv_value(v):
    if isinstance(v, float):
        return "" if math.isnan(v) else repr(v)
    return "" if v is None else v


def _f(v, digits: int) -> str:
    return f"{v:.{digits}f}" if _is_finite(v) else "—"
