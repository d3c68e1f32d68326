"""``lalic bench`` end to end on tiny weights, checked against independent measurements."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from lalic_cli.bench.classical import parse_vs
from lalic_cli.bench.command import bench, expand_quality_args, parse_qualities
from lalic_cli.errors import InputError, LalicError

SIZES = {"a.png": (64, 48), "b.png": (56, 64), "c.png": (64, 40)}  # small: coding time is per-call overhead
RESULT_LISTS = ("quality", "bpp", "bpp-strings", "psnr-rgb", "ms-ssim-rgb", "ms-ssim-rgb-db",
                "encoding_time", "decoding_time")


@pytest.fixture
def folder(tmp_path) -> Path:
    """Three small noisy gradients, one unreadable .png, and a file that is not an image."""
    d = tmp_path / "images"
    d.mkdir()
    rng = np.random.default_rng(7)
    for name, (w, h) in SIZES.items():
        y, x = np.mgrid[0:h, 0:w]
        rgb = np.stack([255 * x / w, 255 * y / h, 128 + 80 * np.sin(x * y / 40)], -1)
        rgb += rng.normal(0, 12, rgb.shape)
        Image.fromarray(np.clip(rgb, 0, 255).round().astype(np.uint8), "RGB").save(d / name)
    (d / "broken.png").write_bytes(b"\x00garbage, not a PNG" * 8)
    (d / "readme.txt").write_text("not an image")
    return d


def invoke(*args):
    return CliRunner().invoke(bench, [str(a) for a in args], catch_exceptions=False)


def psnr_by_hand(a: Image.Image, b: Image.Image) -> float:
    x = np.asarray(a.convert("RGB"), dtype=np.float64)
    y = np.asarray(b.convert("RGB"), dtype=np.float64)
    return 10 * math.log10(255.0**2 / np.mean((x - y) ** 2))


def test_bench_real_coding_matches_encode_decode(tiny_checkpoints, folder, tmp_path, monkeypatch):
    import lalic_cli.codec as codec
    from lalic_cli.bitstream import unpack
    from lalic_cli.image import open_image, prepare

    # Keep the bytes the bench produced (its warm-up included) to check the JSON against them.
    produced: dict[tuple, bytes] = {}
    real_encode = codec.encode_prepared

    def spy(img, quality, **kwargs):
        enc = real_encode(img, quality, **kwargs)
        produced[(img.width, img.height, float(quality))] = enc.data
        return enc

    monkeypatch.setattr(codec, "encode_prepared", spy)
    out_json, out_csv = tmp_path / "out.json", tmp_path / "out.csv"
    r = invoke(folder, "-q", 1, 3, "--json", out_json, "--csv", out_csv, "--per-image")
    monkeypatch.setattr(codec, "encode_prepared", real_encode)
    assert r.exit_code == 0, r.output
    assert "broken.png" in r.stderr and "skipped" in r.stderr
    assert "readme.txt" not in r.output
    assert "BD-rate" in r.stdout and "VTM-9.1" in r.stdout

    doc = json.loads(out_json.read_text())
    assert doc["name"] and doc["description"] and doc["estimate"] is False
    res = doc["results"]
    for key in RESULT_LISTS:
        assert len(res[key]) == 2, key
    assert res["quality"] == [1.0, 3.0]
    assert doc["images"] == sorted(SIZES)
    assert [s["image"] for s in doc["skipped"]] == ["broken.png"]
    assert {(e["anchor"], e["metric"]) for e in doc["bd-rate"]} >= {("VTM-9.1", "psnr-rgb"), ("LALIC (paper)", "psnr-rgb")}

    records = doc["per-image"]
    assert len(records) == 6
    for rec in records:
        w, h = SIZES[rec["image"]]
        assert (rec["width"], rec["height"]) == (w, h)
        original = open_image(folder / rec["image"])
        if rec["quality"] == 3:  # independently: encode and decode here, PSNR by hand
            data = codec.encode_prepared(prepare(original), 3).data
            assert data == produced[(w, h, 3.0)]
            assert rec["psnr-rgb"] == pytest.approx(psnr_by_hand(original, codec.decode(data).image), abs=1e-9)
        else:
            data = produced[(w, h, rec["quality"])]
        assert rec["bytes"] == len(data)
        assert rec["bpp"] == pytest.approx(8 * len(data) / (w * h), rel=1e-12)
        lal = unpack(data)
        strings = sum(map(len, lal.y_strings)) + len(lal.z_string)
        assert rec["bpp-strings"] == pytest.approx(8 * strings / (w * h), rel=1e-12)
        assert rec["bpp-strings"] < rec["bpp"]
        assert rec["ms-ssim-rgb"] is None  # under 161 px: not measured
        assert rec["encoding_time"] > 0 and rec["decoding_time"] > 0
    for i, q in enumerate(res["quality"]):
        mine = [r for r in records if r["quality"] == q]
        assert res["bpp"][i] == pytest.approx(np.mean([r["bpp"] for r in mine]))
        assert res["psnr-rgb"][i] == pytest.approx(np.mean([r["psnr-rgb"] for r in mine]))
        assert res["ms-ssim-rgb"][i] is None

    rows = list(csv.DictReader(out_csv.open()))
    assert len(rows) == 6 and {r["codec"] for r in rows} == {"lalic"}
    assert float(rows[0]["bpp"]) == pytest.approx(records[0]["bpp"])


def test_bench_vs_classical_codecs_with_estimate(tiny_checkpoints, folder, tmp_path):
    out_json, out_csv, out_png = tmp_path / "o.json", tmp_path / "o.csv", tmp_path / "rd.png"
    r = invoke(folder, "-q", "1,3", "--estimate", "--vs", "jpeg,webp", "--limit", 3,
               "--json", out_json, "--csv", out_csv, "--plot", out_png)
    assert r.exit_code == 0, r.output
    for label in ("JPEG 4:4:4", "JPEG 4:2:0", "WebP", "estimated"):
        assert label in r.stdout
    doc = json.loads(out_json.read_text())
    assert doc["estimate"] is True and doc["results"]["quality"] == [1.0, 3.0]
    assert doc["images"] == ["a.png", "b.png"]  # the first 3 by name include broken.png
    assert set(doc["vs"]) == {"jpeg444", "jpeg420", "webp"}
    for key, entry in doc["vs"].items():
        assert entry["name"] and len(entry["results"]["bpp"]) == 8
        assert all(b > 0 for b in entry["results"]["bpp"])
    for label in ("JPEG 4:4:4", "JPEG 4:2:0", "WebP"):
        anchors = {e["anchor"] for e in doc["bd-rate"] if e["test"] == label}
        assert anchors == {"VTM-9.1", "LALIC (estimated)"}
        for e in doc["bd-rate"]:
            assert e["percent"] is None or math.isfinite(e["percent"])
            assert (e["percent"] is None) == (e["reason"] is not None)
    run = doc["results"]
    (lo, q_lo), (hi, q_hi) = sorted(zip(run["bpp"], run["psnr-rgb"]))
    assert doc["margins"]  # WebP's q30 falls between this tiny model's two rates
    for key, entry in doc["vs"].items():  # margins: exactly the settings inside this run's rates
        theirs = entry["results"]
        rows = [m for m in doc["margins"] if m["codec"] == entry["name"]]
        assert [m["setting"] for m in rows] == [q for q, b in zip(theirs["quality"], theirs["bpp"]) if lo <= b <= hi]
        for m in rows:
            i = theirs["quality"].index(m["setting"])
            t = (math.log(m["bpp"]) - math.log(lo)) / (math.log(hi) - math.log(lo))
            ours = q_lo + t * (q_hi - q_lo)
            assert m["psnr-rgb"] == pytest.approx(ours - theirs["psnr-rgb"][i])
    rows = list(csv.DictReader(out_csv.open()))
    assert len(rows) == 2 + 3 * 8
    assert out_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(tmp_path.glob(".*.tmp"))


def test_user_errors(tiny_checkpoints, folder, tmp_path):
    runner = CliRunner()
    for args, words in (
        ([tmp_path / "nope", "-q", "1"], "no such folder"),
        ([tmp_path, "-q", "1"], "no image files"),
        ([folder, "-q", "9"], "outside 1 .. 8"),
        ([folder, "-q", "7", "--weights", "lalic-mse"], "cover quality 7"),
        ([folder, "-q", "1", "--vs", "gif"], "unknown codec"),
        ([folder, "-q", "2", "--weights", "lalic-mse"], "quality 2"),
        ([folder, "-q", "1", "--json", tmp_path / "missing" / "o.json"], "does not exist"),
        ([folder, "-q", "1", "--plot", tmp_path / "rd.xyz"], "unknown image format"),
    ):
        r = runner.invoke(bench, [str(a) for a in args])
        assert isinstance(r.exception, LalicError), (args, r.exception)
        assert words in str(r.exception), (args, r.exception)


def test_quality_arguments():
    assert expand_quality_args(["d", "-q", "1", "2", "3"]) == ["d", "-q", "1", "-q", "2", "-q", "3"]
    assert expand_quality_args(["-q", "1", "2.5", "d", "--limit", "2"]) == ["-q", "1", "-q", "2.5", "d", "--limit", "2"]
    assert expand_quality_args(["d", "--", "-q", "1", "2"]) == ["d", "--", "-q", "1", "2"]
    assert parse_qualities(("3", "1,2", "3")) == (1.0, 2.0, 3.0)
    assert parse_qualities(()) == ()
    with pytest.raises(InputError):
        parse_qualities(("x",))
    assert parse_vs("jpeg, webp,jpeg444") == ["jpeg444", "jpeg420", "webp"]
    assert parse_vs("") == []


def test_plot_names_the_anchors_full_kodak_and_shows_the_strings_curve():
    """On a 3-image subset the anchors are still all of Kodak: the legend says so; the strings-only
    curve, a hair left of the run's, is drawn distinct and on top of it."""
    from lalic_cli.bench.report import Report
    from lalic_cli.bench.runner import Result, Settings

    images = ["kodim01.png", "kodim02.png", "kodim03.png"]
    records = [{"image": im, "quality": q, "bpp": 0.2 * q, "bpp-strings": 0.2 * q - 0.002, "psnr-rgb": 27 + q,
                "ms-ssim-rgb": 0.95, "ms-ssim-rgb-db": 13 + q, "encoding_time": 1.0, "decoding_time": 1.0}
               for im in images for q in (1.0, 3.0, 6.0)]
    result = Result(Settings(qualities=(1.0, 3.0, 6.0)), "cpu", images=images, records=records)
    psnr_axes = Report(result).figure().axes[0]
    lines = {line.get_label(): line for line in psnr_axes.get_lines()}
    assert set(lines) == {"VTM-9.1, anchor: full Kodak (24 images)", "LALIC (paper), anchor: full Kodak (24 images)",
                          "LALIC (this run), 3 images", "LALIC (this run), strings only, 3 images"}
    assert [t.get_text() for t in psnr_axes.get_legend().get_texts()] == list(lines)
    run, strings = lines["LALIC (this run), 3 images"], lines["LALIC (this run), strings only, 3 images"]
    assert strings.get_zorder() > run.get_zorder()
    assert strings.get_linestyle() != run.get_linestyle() and strings.get_marker() != run.get_marker()
    assert strings.get_color() != run.get_color() and strings.get_markerfacecolor() == "none"
