"""``lalic bench --codec mrt``: MRT at its rate points with the extreme-rate comparisons (LALIC q1,
AVIF at its lowest setting, downscaled AVIF / WebP) and the side-by-side picture, on tiny weights,
checked against independent encodes and by-hand arithmetic."""

from __future__ import annotations

import io
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from lalic_cli.bench import classical, picture
from lalic_cli.bench.command import bench, parse_qualities
from lalic_cli.bench.families import FAMILIES
from lalic_cli.errors import InputError, LalicError

SIZES = {"a.png": (256, 192), "b.png": (72, 64)}  # a.png: MS-SSIM measured (>= 161 px) and the picture
COMPARISONS = ("lalic-q1", "avif-min", "avif-down2", "avif-down4", "webp-down2", "webp-down4")


@pytest.fixture(scope="module")
def mrt_weights(tmp_path_factory) -> Path:
    from lalic_cli.models import MRT, get_config
    from lalic_cli.zoo.registry import save_weights

    torch.manual_seed(0)
    model = MRT(**get_config("mrt-tiny").kwargs()).eval()  # qualities 1 and 2
    path = tmp_path_factory.mktemp("mrt") / "mrt-bench.safetensors"
    save_weights(model.state_dict(), path, {"config": "mrt-tiny", "family": "mrt"})
    return path


def _photo(w: int, h: int, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    rgb = np.stack([255 * x / w, 255 * y / h, 128 + 90 * np.sin(x / 9.0) * np.cos(y / 13.0)], -1)
    rgb += rng.normal(0, 10, rgb.shape)
    return Image.fromarray(np.clip(rgb, 0, 255).round().astype(np.uint8), "RGB")


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("images")
    for i, (name, (w, h)) in enumerate(SIZES.items()):
        _photo(w, h, i).save(d / name)
    return d


@pytest.fixture(scope="module")
def mrt_run(_tiny_store, mrt_weights, folder, tmp_path_factory):
    """One full ``--codec mrt`` run (default qualities), LALIC q1 from the tiny LALIC weights."""
    store, _ = _tiny_store
    out = tmp_path_factory.mktemp("out")
    paths = {"json": out / "o.json", "csv": out / "o.csv", "picture": out / "side.png"}
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LALIC_WEIGHTS", str(store))
        r = CliRunner().invoke(bench, [str(folder), "--codec", "mrt", "--weights", str(mrt_weights),
                                       "--json", str(paths["json"]), "--csv", str(paths["csv"]), "--per-image",
                                       "--picture", str(paths["picture"])], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    return r, json.loads(paths["json"].read_text()), paths


def _record(records: list[dict], image: str, quality: float) -> dict:
    (rec,) = [r for r in records if r["image"] == image and r["quality"] == quality]
    return rec


def test_mrt_rows_match_real_coding(mrt_run, mrt_weights, folder):
    from lalic_cli.codec import decode, encode_image

    r, doc, _ = mrt_run
    assert doc["codec"] == "mrt" and doc["name"] == "MRT (this run)"
    assert doc["results"]["quality"] == [1.0, 2.0]  # mrt-tiny codes 2 of MRT's 3 rate points
    assert "no MRT weights for quality 3" in r.stderr
    assert "MRT, this run" in r.stdout
    w, h = SIZES["a.png"]
    rec = _record(doc["per-image"], "a.png", 2.0)
    data = encode_image(folder / "a.png", 2, weights=str(mrt_weights), codec="mrt")
    assert rec["codec"] == "mrt" and rec["bytes"] == len(data)
    assert rec["bpp"] == pytest.approx(8 * len(data) / (w * h), rel=1e-12)
    rgb = np.asarray(decode(data, weights=str(mrt_weights)).image, dtype=np.float64)
    original = np.asarray(Image.open(folder / "a.png"), dtype=np.float64)
    assert rec["psnr-rgb"] == pytest.approx(10 * math.log10(255**2 / np.mean((rgb - original) ** 2)), abs=1e-9)
    assert 0 < rec["ms-ssim-rgb"] < 1 and rec["decoding_time"] > 0


def test_comparison_rows_are_added_with_sane_values(mrt_run):
    r, doc, paths = mrt_run
    assert list(doc["vs"]) == list(COMPARISONS)
    for key in COMPARISONS:
        res = doc["vs"][key]["results"]
        assert res["images"] == [2] and len(res["bpp"]) == 1
        assert res["bpp"][0] > 0 and 5 < res["psnr-rgb"][0] < 60
        assert 0 < res["ms-ssim-rgb"][0] <= 1  # a.png is large enough for MS-SSIM
        assert res["decoding_time"][0] > 0
        assert doc["vs"][key]["name"] in r.stdout
    assert doc["vs"]["lalic-q1"]["results"]["quality"] == [1.0]
    assert "2x Lanczos" in doc["vs"]["webp-down2"]["description"]
    # less data to code: the 4x downscaled copies take fewer bits than the 2x ones
    for fmt in ("avif", "webp"):
        assert doc["vs"][f"{fmt}-down4"]["results"]["bpp"][0] < doc["vs"][f"{fmt}-down2"]["results"]["bpp"][0]
    # no BD-rate at these rates, and it says so
    assert doc["bd-rate"] == [] and "extrapolate" in doc["bd-rate-note"]
    assert "BD-rate: n/a" in r.stdout and "VTM-9.1" not in r.stdout
    rows = [line for line in paths["csv"].read_text().splitlines()[1:]]
    assert len(rows) == 2 * 2 + 2 * len(COMPARISONS)  # per image: 2 MRT qualities + one row per comparison


def test_downscaled_bpp_counts_the_original_pixels(mrt_run, folder):
    _, doc, _ = mrt_run
    w, h = SIZES["b.png"]
    rec = _record(doc["vs-per-image"]["webp-down2"], "b.png", 0)
    # independently: Lanczos to half size, WebP at quality 0, the same options as the bench
    small = Image.open(folder / "b.png").resize((w // 2, h // 2), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    small.save(buf, format="WEBP", quality=0, method=4)
    assert rec["bytes"] == len(buf.getvalue())
    assert rec["bpp"] == pytest.approx(8 * len(buf.getvalue()) / (w * h), rel=1e-12)
    assert (rec["width"], rec["height"]) == (w, h)


def test_lalic_q1_row_is_lalic_at_quality_1(mrt_run, _tiny_store, folder, monkeypatch):
    from lalic_cli.codec import encode_image

    monkeypatch.setenv("LALIC_WEIGHTS", str(_tiny_store[0]))
    _, doc, _ = mrt_run
    rec = _record(doc["vs-per-image"]["lalic-q1"], "b.png", 1.0)
    data = encode_image(folder / "b.png", 1)
    assert rec["bytes"] == len(data)
    assert rec["bpp"] == pytest.approx(8 * len(data) / (72 * 64))


def test_picture_shows_each_codec_near_the_target_rate(mrt_run, mrt_weights, folder):
    from lalic_cli.codec import decode, encode_image

    r, doc, paths = mrt_run
    assert "side.png: a.png, 8 tiles" in r.stdout
    sheet = np.asarray(Image.open(paths["picture"]).convert("RGB"))
    w, h = SIZES["a.png"]
    n = 2 + len(COMPARISONS)  # the original, MRT, the comparisons
    cols, rows = picture.grid(n)
    assert (cols, rows) == (4, 2)
    assert sheet.shape == (rows * (picture.LABEL_HEIGHT + h) + (rows - 1) * picture.GAP,
                           cols * w + (cols - 1) * picture.GAP, 3)

    def tile(i: int) -> np.ndarray:
        x, y = (i % cols) * (w + picture.GAP), (i // cols) * (picture.LABEL_HEIGHT + h + picture.GAP)
        return sheet[y + picture.LABEL_HEIGHT: y + picture.LABEL_HEIGHT + h, x: x + w]

    assert np.array_equal(tile(0), np.asarray(Image.open(folder / "a.png")))
    # tile 1: MRT at the quality whose bpp on a.png is nearest 0.02 (in ratio), decoded independently
    mine = [rec for rec in doc["per-image"] if rec["image"] == "a.png"]
    q = min(mine, key=lambda rec: abs(math.log(rec["bpp"] / 0.02)))["quality"]
    data = encode_image(folder / "a.png", q, weights=str(mrt_weights), codec="mrt")
    assert np.array_equal(tile(1), np.asarray(decode(data, weights=str(mrt_weights)).image))
    # tile 4: AVIF downscaled by 2 and back is not a copy of the original
    assert not np.array_equal(tile(4), tile(0))


def test_missing_avif_encoder_and_lalic_weights_are_notes(mrt_weights, folder, tmp_path, monkeypatch):
    import PIL.features

    from lalic_cli.zoo import registry

    real_check, real_catalogue = PIL.features.check, registry.catalogue
    monkeypatch.setattr(PIL.features, "check", lambda name: False if name == "avif" else real_check(name))
    monkeypatch.setitem(sys.modules, "pillow_avif", None)  # the plugin package: not installed
    monkeypatch.setattr(registry, "catalogue", lambda: [e for e in real_catalogue() if e.family != "lalic"])
    out_json = tmp_path / "o.json"
    r = CliRunner().invoke(bench, [str(folder / "b.png"), "--codec", "mrt", "-q", "1", "--weights", str(mrt_weights),
                                   "--json", str(out_json)], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert "note: avif-min, avif-down2, avif-down4 skipped: this Pillow cannot write AVIF" in r.stdout
    assert "note: lalic-q1 skipped:" in r.stdout
    doc = json.loads(out_json.read_text())
    assert list(doc["vs"]) == ["webp-down2", "webp-down4"]
    assert len(doc["notes"]) == 2 and doc["results"]["quality"] == [1.0]


def test_qualities_per_family(mrt_weights, folder):
    from lalic_cli.models import get_config

    assert FAMILIES["mrt"].qualities == tuple(float(q) for q in range(1, len(get_config("mrt-small").bits) + 1))
    assert parse_qualities(("3", "1,2"), "mrt") == (1.0, 2.0, 3.0)
    assert parse_qualities(("1.5", "6"), "lalic") == (1.5, 6.0)
    for values, codec, words in ((("4",), "mrt", "outside 1 .. 3"), (("1.5",), "mrt", "whole numbers"),
                                 (("9",), "lalic", "outside 1 .. 8"), (("x",), "mrt", "not a number")):
        with pytest.raises(InputError, match=words):
            parse_qualities(values, codec)
    runner = CliRunner()
    for args, words in (
        (["-q", "2.5"], "whole numbers"),
        (["-q", "3", "--weights", mrt_weights], "codes qualities 1 .. 2"),  # before any coding
        (["-q", "1", "--weights", mrt_weights, "--picture-image", "a.png"], "--picture"),
        (["-q", "1", "--weights", mrt_weights, "--picture", folder.parent / "p.png", "--picture-image", "z.png"],
         "no such image"),
        (["-q", "1", "--weights", mrt_weights, "--picture", folder.parent / "p.xyz"], "unknown image format"),
    ):
        r = runner.invoke(bench, [str(folder), "--codec", "mrt", *map(str, args)])
        assert isinstance(r.exception, LalicError), (args, r.exception)
        assert words in str(r.exception), (args, r.exception)


def test_downscaled_codec_reconstructs_at_the_original_size():
    rgb = np.asarray(_photo(75, 61, 3))
    for key, small in (("webp-down4", (19, 15)), ("webp-down2", (38, 30))):
        codec = classical.CODECS[key]
        assert classical.scaled_size(75, 61, codec.scale) == small
        coded = classical.code_image(codec, rgb, classical.MIN_QUALITY)
        assert coded.reconstruction.shape == rgb.shape and coded.reconstruction.dtype == np.uint8
        assert coded.nbytes == len(_webp_bytes(rgb, small))  # what was coded is the small copy


def _webp_bytes(rgb: np.ndarray, size: tuple[int, int]) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).resize(size, Image.Resampling.LANCZOS).save(buf, format="WEBP", quality=0, method=4)
    return buf.getvalue()


def test_closest_rate_is_by_ratio():
    records = [{"image": "a", "bpp": 0.01, "quality": 1}, {"image": "a", "bpp": 0.035, "quality": 2},
               {"image": "b", "bpp": 0.02, "quality": 3}, {"image": "a", "bpp": math.nan, "quality": 4}]
    assert picture.closest(records, "a")["quality"] == 2  # 1.75x above beats 2x below
    assert picture.closest(records, "a", 0.012)["quality"] == 1
    assert picture.closest(records, "c") is None
