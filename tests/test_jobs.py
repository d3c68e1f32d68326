"""Batch work on more than one core: ``lalic encode/decode --jobs N`` gives the output, order
and exit status of a serial run and leaves no partial file on Ctrl-C; the library works
from a ``multiprocessing`` spawn pool (how it runs under a distributed engine)."""

from __future__ import annotations

import functools
import multiprocessing
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from conftest import blocky_image
from lalic_cli.bitstream import unpack
from lalic_cli.codec import decode_bytes, encode_image


def test_the_library_works_from_a_spawn_pool():
    images = [blocky_image(40 + 8 * i, 56, seed=i) for i in range(2)]
    encode = functools.partial(encode_image, quality=3, device="cpu")
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        coded = pool.map(encode, images)
        decoded = pool.map(decode_bytes, coded)
    assert coded == [encode(img) for img in images]  # the same bits as in this process
    assert [img.size for img in decoded] == [img.size for img in images]


def _lalic(args: list[str], cwd: Path) -> tuple[int, list[str], str]:
    r = subprocess.run([sys.executable, "-m", "lalic_cli.cli", *args], cwd=cwd, capture_output=True, text=True,
                       timeout=600)
    return r.returncode, [re.sub(r"\d+\.\d\d s$", "T s", line) for line in r.stdout.splitlines()], r.stderr


def test_jobs_give_the_output_of_a_serial_run(tmp_path):
    for i in range(3):
        blocky_image(48, 64 + 8 * i, seed=i).save(tmp_path / f"im{i}.png")
    (tmp_path / "bad.png").write_bytes(b"not an image")
    inputs = ["im0.png", "bad.png", "im1.png", "im2.png"]
    runs = {}
    for jobs in ("1", "2"):
        out = tmp_path / f"out{jobs}"
        out.mkdir()
        encoded = _lalic(["encode", *inputs, "-o", str(out), "--jobs", jobs], tmp_path)
        lals = sorted(str(p) for p in out.glob("*.lal"))
        decoded = _lalic(["decode", *lals, "-o", str(out), "--jobs", jobs], tmp_path)
        files = {p.name: p.read_bytes() for p in sorted(out.iterdir())}
        runs[jobs] = (encoded[0], [line.replace(f"out{jobs}", "OUT") for line in encoded[1]], encoded[2],
                      decoded[0], [line.replace(f"out{jobs}", "OUT") for line in decoded[1]], decoded[2], files)
    assert runs["2"] == runs["1"]
    code, lines, err, dcode, dlines, derr, files = runs["1"]
    errors = err.splitlines()  # errors go to stderr, the summary lines to stdout
    assert code == 2 and len(lines) == 3 and len(errors) == 2 and errors[0].startswith("lalic: error: bad.png: ")
    assert errors[-1].startswith("lalic: 1 of 4 inputs failed")
    assert dcode == 0 and len(dlines) == 3 and sorted(files) == [f"im{i}.{e}" for i in range(3) for e in ("lal", "png")]


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def test_ctrl_c_with_jobs_leaves_no_partial_file(tmp_path):
    n = 8
    for i in range(n):
        blocky_image(768, 1024, seed=i).save(tmp_path / f"im{i}.png")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "lalic_cli.cli", "encode", *(f"im{i}.png" for i in range(n)),
                             "--jobs", "2"], cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    deadline = time.monotonic() + 300
    # the workers are coding once a first file is finished; most are still to come
    while not list(tmp_path.glob("*.lal")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(_children(proc.pid)) == 2
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C on a terminal does: the whole process group
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, err
    assert err.strip().splitlines()[-1] == "lalic: interrupted" and "Traceback" not in err
    left = sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith(".png"))
    assert all(name.endswith(".lal") for name in left) and len(left) < n  # no temporary file
    for name in left:  # and a finished one is whole (its CRC checked)
        assert unpack((tmp_path / name).read_bytes()).header.width == 1024
