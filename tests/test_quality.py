"""One mistake, one error: a quality the family or the weights do not code is a QualityError
(an InputError) from the command line, the library and the Pillow plugin alike."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from PIL import Image

from conftest import ROOT, tiny_state_dict
from lalic_cli import encode_image
from lalic_cli.errors import InputError, QualityError
from lalic_cli.families import FAMILIES


def lalic(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lalic_cli.cli", *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)


@pytest.mark.parametrize("args, words", [
    (["-q", "0"], "quality 0 is outside 1 .. 8"),
    (["-q", "99"], "quality 99 is outside 1 .. 8"),
    (["-q", "abc"], "'abc' is not a number"),
    (["-q", "2.5", "--codec", "mrt"], "whole numbers"),
    (["--bogus"], "No such option '--bogus'"),
])
def test_bad_options_print_one_error_line_and_exit_2(sample_png, args, words):
    r = lalic("encode", str(sample_png), *args)
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("lalic: error: "), r.stderr
    assert words in r.stderr and "Traceback" not in r.stderr and "Usage" not in r.stderr
    assert not sample_png.with_suffix(".lal").exists()


def test_family_quality_check():
    lalic_family, mrt = FAMILIES["lalic"], FAMILIES["mrt"]
    assert lalic_family.parse_quality("7.5") == 7.5 and lalic_family.parse_quality(8) == 8.0
    assert mrt.parse_quality("3") == 3.0
    for family, value in ((lalic_family, 8.01), (lalic_family, "nan"), (lalic_family, True), (lalic_family, None),
                          (mrt, 4), (mrt, 1.5)):
        with pytest.raises(QualityError):
            family.parse_quality(value)


def test_weights_that_do_not_code_a_quality_raise_the_same_error_everywhere(tiny_checkpoints, sample_png, tmp_path):
    """Fixed-rate (official-layout) weights sit on q1..q6: asking them for q7 (which the
    bundled weights code) is the same QualityError from encode_image, Pillow's save and
    the command line."""
    img = Image.open(sample_png)
    with pytest.raises(QualityError, match="quality 7"):
        encode_image(img, 7, weights="lalic-mse")
    from lalic_cli import register_pillow

    register_pillow()
    with pytest.raises(QualityError, match="quality 7"):
        img.save(tmp_path / "x.lal", quality=7, weights="lalic-mse")
    assert issubclass(QualityError, InputError)
    r = lalic("encode", str(sample_png), "-q", "7", "--weights", "lalic-mse", "-o", str(tmp_path / "y.lal"))
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "quality 7" in r.stderr, r.stderr


def test_variable_rate_file_refuses_qualities_above_its_rates(sample_png, tmp_path):
    """A 6-rate model given by path would clamp q7 to q6 and code the wrong quality."""
    from lalic_cli.models import LALIC, get_config
    from lalic_cli.zoo.registry import save_weights

    torch.manual_seed(0)
    model = LALIC(**get_config("tiny").kwargs(), num_rates=6)
    path = tmp_path / "vr6.safetensors"
    save_weights(model.state_dict(), path, {"config": "tiny", "family": "lalic", "quality": "variable"})
    assert model.max_quality == 6
    with pytest.raises(QualityError, match="outside 1 .. 6"):
        encode_image(Image.open(sample_png), 6.5 + 0.5, weights=str(path))
    assert len(encode_image(Image.open(sample_png), 6, weights=str(path))) > 0
