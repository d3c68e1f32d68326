"""BD-rate and the image metrics behind ``lalic bench`` (fast: no model)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lalic_cli.bench.bdrate import BDRate, bd_rate, bd_rate_curves, quality_margins
from lalic_cli.bench.metrics import MS_SSIM_MIN_SIDE, mean, measure, ms_ssim, ms_ssim_db, psnr
from lalic_cli.bench.report import load_anchor, normalise

VTM = normalise(load_anchor("kodak-vtm91-compressai.json")["results"])
PAPER = normalise(load_anchor("kodak-lalic.json")["results"])


def test_paper_lalic_against_vtm_is_minus_15_26_percent():
    bd = bd_rate(VTM["bpp"], VTM["psnr-rgb"], PAPER["bpp"], PAPER["psnr-rgb"])
    assert bd.ok and bd.reason is None
    assert bd.percent == pytest.approx(-15.26, abs=0.1)
    assert bd_rate_curves(VTM, PAPER, "psnr-rgb").percent == pytest.approx(bd.percent)


def test_curve_against_itself_is_zero():
    assert bd_rate(VTM["bpp"], VTM["psnr-rgb"], VTM["bpp"], VTM["psnr-rgb"]).percent == pytest.approx(0, abs=1e-9)


@pytest.mark.parametrize("scale", [1.1, 0.5, 2.0])
def test_scaled_rate_gives_the_scale(scale):
    rate = [b * scale for b in PAPER["bpp"]]
    bd = bd_rate(PAPER["bpp"], PAPER["psnr-rgb"], rate, PAPER["psnr-rgb"])
    assert bd.percent == pytest.approx(100 * (scale - 1), abs=1e-6)


def test_swapping_anchor_and_test_inverts_the_ratio():
    ab = bd_rate(VTM["bpp"], VTM["psnr-rgb"], PAPER["bpp"], PAPER["psnr-rgb"]).percent
    ba = bd_rate(PAPER["bpp"], PAPER["psnr-rgb"], VTM["bpp"], VTM["psnr-rgb"]).percent
    assert (1 + ab / 100) * (1 + ba / 100) == pytest.approx(1, abs=1e-9)


def test_point_order_and_invalid_points_do_not_matter():
    ref = bd_rate(VTM["bpp"], VTM["psnr-rgb"], PAPER["bpp"], PAPER["psnr-rgb"]).percent
    order = [3, 0, 5, 1, 4, 2]
    rate = [PAPER["bpp"][i] for i in order] + [math.nan, 0.3]
    quality = [PAPER["psnr-rgb"][i] for i in order] + [31.0, math.nan]
    assert bd_rate(VTM["bpp"][::-1], VTM["psnr-rgb"][::-1], rate, quality).percent == pytest.approx(ref)


def test_not_computable_cases_give_nan_with_a_reason():
    no_overlap = bd_rate([0.1, 0.2], [20, 22], [0.3, 0.4], [30, 32])
    assert math.isnan(no_overlap.percent) and "overlap" in no_overlap.reason
    assert not no_overlap.ok and no_overlap.format() == "n/a"
    one_point = bd_rate([0.1, 0.2], [20, 22], [0.15], [21])
    assert math.isnan(one_point.percent) and "2 are needed" in one_point.reason
    all_nan = bd_rate([0.1, 0.2], [20, 22], [0.1, 0.2], [math.nan, math.nan])
    assert math.isnan(all_nan.percent) and all_nan.reason
    missing = bd_rate_curves({"bpp": [0.1, 0.2], "psnr-rgb": [1, 2]}, {"bpp": [0.1]}, "ms-ssim-rgb-db")
    assert math.isnan(missing.percent) and "no" in missing.reason
    assert float(BDRate(-3.5)) == -3.5 and BDRate(-3.5).format() == "-3.50%"


def test_quality_margins_by_hand():
    """Test curve (0.1, 30), (0.4, 34): at 0.2 bpp, halfway in log-rate, it reads 32 dB."""
    anchor_rate, anchor_q = [0.05, 0.2, 0.4, 0.8], [28.0, 31.5, 34.5, 36.0]
    got = quality_margins(anchor_rate, anchor_q, [0.4, 0.1, math.nan], [34.0, 30.0, 50.0])
    assert [m.rate for m in got] == [0.2, 0.4]  # 0.05 and 0.8 lie outside 0.1..0.4: not extrapolated
    assert got[0].test_quality == pytest.approx(32.0) and got[0].margin == pytest.approx(0.5)
    assert got[1].margin == pytest.approx(-0.5)
    assert quality_margins([0.2], [30.0], [0.1], [29.0]) == []


def test_psnr_by_hand():
    a = np.zeros((4, 5, 3), np.uint8)
    b = a.copy()
    b[0, 0, 0] = 10  # MSE = 100 / 60
    assert psnr(a, b) == pytest.approx(10 * math.log10(255**2 / (100 / 60)))
    assert psnr(a, a) == math.inf
    with pytest.raises(ValueError):
        psnr(a, b[:3])


def test_ms_ssim_is_nan_for_small_images_and_skipped_in_means():
    rng = np.random.default_rng(0)
    small = rng.integers(0, 256, (MS_SSIM_MIN_SIDE - 1, 200, 3), dtype=np.uint8)
    assert math.isnan(ms_ssim(small, small))
    m = measure(small, small)
    assert math.isnan(m["ms-ssim-rgb"]) and math.isnan(m["ms-ssim-rgb-db"]) and m["psnr-rgb"] == math.inf
    big = rng.integers(0, 256, (MS_SSIM_MIN_SIDE, MS_SSIM_MIN_SIDE, 3), dtype=np.uint8)
    noisy = np.clip(big.astype(int) + rng.integers(-20, 21, big.shape), 0, 255).astype(np.uint8)
    v = ms_ssim(big, noisy)
    assert 0 < v < 1 and ms_ssim(big, big) == pytest.approx(1.0)
    assert ms_ssim_db(v) == pytest.approx(-10 * math.log10(1 - v))
    assert math.isnan(ms_ssim_db(math.nan)) and ms_ssim_db(1.0) == math.inf
    assert mean([1.0, math.nan, 3.0]) == 2.0 and math.isnan(mean([math.nan]))
