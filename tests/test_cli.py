"""The command line end to end, on tiny official-layout weights created by the tests."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import torch
from click.testing import CliRunner
from PIL import Image

from conftest import tiny_state_dict
from lalic_cli import decode_file, encode_image
from lalic_cli.cli import main


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def psnr(a: Image.Image, b: Image.Image) -> float:
    x = np.asarray(a, dtype=np.float64)
    y = np.asarray(b, dtype=np.float64)
    return 10 * np.log10(255.0**2 / np.mean((x - y) ** 2))


def test_encode_decode_round_trip(tiny_checkpoints, sample_png, tmp_path):
    r = run("encode", sample_png, "-q", 3)
    assert r.exit_code == 0, r.output
    lal = sample_png.with_suffix(".lal")
    size = lal.stat().st_size
    assert f"{size:,} B" in r.output
    assert f"{8 * size / (96 * 80):.4f} bpp" in r.output
    out_png = tmp_path / "back.png"
    r = run("decode", lal, "-o", out_png)
    assert r.exit_code == 0, r.output
    back = Image.open(out_png)
    assert back.size == (96, 80) and back.mode == "RGB"
    assert np.array_equal(np.asarray(back), np.asarray(decode_file(lal)))
    # The library path gives the same bytes as the CLI.
    assert encode_image(sample_png, 3) == lal.read_bytes()


def test_default_output_names_and_no_overwrite(tiny_checkpoints, sample_png):
    assert run("encode", sample_png, "-q", 1).exit_code == 0
    lal = sample_png.with_suffix(".lal")
    before = lal.read_bytes()
    r = run("encode", sample_png, "-q", 3)
    assert r.exit_code == 2 and "exists" in r.output and "--force" in r.output
    assert lal.read_bytes() == before
    assert run("encode", sample_png, "-q", 3, "--force").exit_code == 0
    assert lal.read_bytes() != before
    assert run("decode", lal).exit_code == 2  # sample.png exists
    assert not list(sample_png.parent.glob(".*.tmp"))


def test_several_inputs_into_folder(tiny_checkpoints, sample_png, tmp_path):
    other = tmp_path / "other.png"
    Image.open(sample_png).transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(other)
    outdir = tmp_path / "out"
    outdir.mkdir()
    r = run("encode", sample_png, other, "-q", 3, "-o", outdir)
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in outdir.iterdir()) == ["other.lal", "sample.lal"]
    assert (outdir / "sample.lal").read_bytes() == encode_image(sample_png, 3)


def test_missing_output_folders(tiny_checkpoints, sample_png, tmp_path, monkeypatch):
    """-o ending in / or shared by several inputs is created; a file in a missing folder is
    refused with one line before any coding, and nothing is written."""
    other = tmp_path / "other.png"
    Image.open(sample_png).transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(other)
    r = run("encode", sample_png, other, "-q", 3, "-o", f"{tmp_path}/out/")
    assert r.exit_code == 0, r.output
    assert (tmp_path / "out" / "sample.lal").read_bytes() == encode_image(sample_png, 3)
    r = run("encode", sample_png, "-q", 3, "-o", f"{tmp_path}/one/")
    assert r.exit_code == 0, r.output
    assert (tmp_path / "one" / "sample.lal").is_file()
    r = run("decode", tmp_path / "out" / "sample.lal", tmp_path / "out" / "other.lal", "-o", tmp_path / "dec" / "deep")
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in (tmp_path / "dec" / "deep").iterdir()) == ["other.png", "sample.png"]

    import lalic_cli.codec

    def no_coding(*_a, **_k):
        raise AssertionError("coding started for an output that cannot be written")

    monkeypatch.setattr(lalic_cli.codec, "encode_prepared", no_coding)
    monkeypatch.setattr(lalic_cli.codec, "decode", no_coding)
    for args in (["encode", sample_png, "-o", tmp_path / "nodir" / "x.lal"],
                 ["decode", tmp_path / "out" / "sample.lal", "-o", tmp_path / "nodir" / "x.png"]):
        r = run(*args)
        assert r.exit_code == 2, r.output
        assert r.output == f"lalic: error: {args[-1]}: folder {tmp_path / 'nodir'} does not exist (end -o with / to create it)\n"
    assert not (tmp_path / "nodir").exists()
    r = run("encode", sample_png, other, "-o", sample_png)
    assert r.exit_code == 2 and r.output == f"lalic: error: {sample_png}: exists and is not a folder\n"


def test_info_json(tiny_checkpoints, sample_png):
    run("encode", sample_png, "-q", 3)
    r = run("info", sample_png.with_suffix(".lal"), "--json")
    assert r.exit_code == 0, r.output
    info = json.loads(r.output)
    assert (info["width"], info["height"], info["mode"], info["quality"]) == (96, 80, "RGB", 3.0)
    assert info["weights"] == "lalic-mse-q3"
    assert len(info["y_string_bytes"]) == 8 and info["channel_groups"] == 4


def test_missing_weights_says_what_to_do(weights_dir, sample_png):
    r = run("encode", sample_png, "-q", 4, "--weights", "lalic-mse")
    assert r.exit_code == 2
    assert "lalic weights import lalic-mse-q4.pth -q 4" in r.output


def test_decoding_with_other_weights_is_refused(tiny_checkpoints, sample_png, tmp_path):
    run("encode", sample_png, "-q", 3)
    other = tmp_path / "other.pth"
    torch.save(tiny_state_dict(seed=99), other)
    r = run("decode", sample_png.with_suffix(".lal"), "-o", tmp_path / "x.png", "--weights", other)
    assert r.exit_code == 2 and "encoded with weights lalic-mse-q3" in r.output
    assert not (tmp_path / "x.png").exists()


def test_weights_list_and_import(weights_dir, tmp_path):
    r = run("weights", "list")
    assert r.exit_code == 0 and "lalic-mse-q6" in r.output and "missing" in r.output
    p = tmp_path / "ckpt.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in tiny_state_dict(2).items()}}, p)
    r = run("weights", "import", p, "-q", 2)
    assert r.exit_code == 0, r.output
    assert (weights_dir / "lalic-mse-q2.safetensors").is_file()
    assert run("weights", "import", p, "-q", 2).exit_code == 2  # exists, no --force
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    r = run("weights", "import", bad, "-q", 1)
    assert r.exit_code == 2 and "cannot read" in r.output


def test_user_errors_exit_2_without_traceback(tmp_path, weights_dir):
    junk = tmp_path / "junk.lal"
    junk.write_bytes(b"hello world, this is not a lal file")
    for args in (["info", junk], ["encode", tmp_path / "nope.png"], ["encode", junk], ["decode", tmp_path]):
        r = run(*args)
        assert r.exit_code == 2 and r.output.startswith("lalic: error:"), (args, r.output)
    # The real console script, in a fresh process: one line on stderr, no traceback.
    for args in (["decode", junk], ["encode", junk]):
        p = subprocess.run([sys.executable, "-m", "lalic_cli.cli", *map(str, args)], capture_output=True, text=True, cwd=tmp_path)
        assert p.returncode == 2, (args, p.stderr)
        assert "Traceback" not in p.stderr and p.stderr.startswith("lalic: error:")
        assert len(p.stderr.strip().splitlines()) == 1


def test_stdin_stdout(tiny_checkpoints, sample_png):
    data = sample_png.read_bytes()
    r = CliRunner().invoke(main, ["encode", "-", "-q", "3"], input=data)
    assert r.exit_code == 0
    lal = r.stdout_bytes
    assert lal == encode_image(sample_png, 3)
    r = CliRunner().invoke(main, ["decode", "-"], input=lal)
    assert r.exit_code == 0
    img = Image.open(__import__("io").BytesIO(r.stdout_bytes))
    assert img.size == (96, 80)


def test_batch_errors_name_the_input_once_on_stderr(tiny_checkpoints, sample_png, tmp_path):
    missing = tmp_path / "nonexist.png"
    r = run("encode", missing, sample_png, "-q", 3, "-o", tmp_path / "out")
    assert r.exit_code == 2
    assert r.stderr == f"lalic: error: {missing}: no such file\nlalic: 1 of 2 inputs failed: {missing}\n"
    assert "lalic: error" not in r.stdout and (tmp_path / "out" / "sample.lal").is_file()


def test_unreadable_stdin_and_directories_read_plainly(tiny_checkpoints, tmp_path):
    r = CliRunner().invoke(main, ["encode", "-", "-o", str(tmp_path / "x.lal")], input=b"junk")
    assert r.exit_code == 2 and r.output == "lalic: error: stdin: not a readable image (unknown format)\n"
    folder = tmp_path / "adir"
    folder.mkdir()
    for command in ("encode", "decode", "info"):
        r = run(command, folder)
        assert r.exit_code == 2 and r.output == f"lalic: error: {folder}: is a directory\n", (command, r.output)


def test_binary_output_is_not_poured_onto_a_terminal(tiny_checkpoints, sample_png, tmp_path):
    """Like gzip and cwebp: one error line, exit 2, nothing written to the terminal."""
    import os
    import pty

    lal = tmp_path / "s.lal"
    lal.write_bytes(encode_image(sample_png, 3))
    for args, stdin in ((["encode", "-"], sample_png), (["encode", sample_png, "-o", "-"], None),
                        (["decode", lal, "-o", "-"], None), (["decode", "-"], lal)):
        terminal, screen = pty.openpty()
        try:
            with open(stdin or os.devnull, "rb") as f:
                p = subprocess.run([sys.executable, "-m", "lalic_cli.cli", *map(str, args)], stdin=f,
                                   stdout=screen, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
            os.set_blocking(terminal, False)
            try:
                shown = os.read(terminal, 1 << 16)
            except BlockingIOError:
                shown = b""
        finally:
            os.close(terminal)
            os.close(screen)
        assert p.returncode == 2, (args, p.stderr)
        assert p.stderr.startswith("lalic: error: refusing to write") and p.stderr.count("\n") == 1
        assert shown == b"", args
