"""``lalic_cli.kernels`` is the same loader from a plain checkout and from a built wheel.

pyproject installs the top-level ``kernels/`` folder as ``lalic_cli.kernels``; in the
source tree a small shim (``lalic_cli/kernels/__init__.py``) stands in for that mapping.
Both checks run ``python -S`` (no site-packages, so no installed or editable lalic can
answer instead) with ``sys.path`` holding only the tree under test.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

PROBE = textwrap.dedent(
    """
    import json, sys
    sys.path[:0] = [sys.argv[1]]
    import lalic_cli, lalic_cli.kernels as k
    print(json.dumps({
        "file": k.__file__,
        "here": str(k._HERE),
        "callable": callable(k.load_extension),
        "bound": lalic_cli.kernels is k is sys.modules["lalic_cli.kernels"],
        "data": str(__import__("lalic_cli.resources").resources.data_dir()),
    }))
    """
)


def _probe(tree: Path, cwd: Path) -> dict:
    proc = subprocess.run([sys.executable, "-S", "-c", PROBE, str(tree)], capture_output=True, text=True, cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_checkout_import_from_repository_root():
    r = _probe(ROOT, ROOT)
    assert r["file"] == str(ROOT / "kernels" / "__init__.py")
    assert r["here"] == str(ROOT / "kernels") and (ROOT / "kernels" / "biwkv_cpu.cpp").is_file()
    assert r["callable"] and r["bound"]
    assert r["data"] == str(ROOT)


def test_shim_needs_the_top_level_kernels(tmp_path):
    shutil.copytree(ROOT / "lalic_cli", tmp_path / "lalic_cli", ignore=shutil.ignore_patterns("__pycache__"))
    proc = subprocess.run([sys.executable, "-S", "-c", PROBE, str(tmp_path)], capture_output=True, text=True,
                          cwd=tmp_path)
    assert proc.returncode != 0
    assert "ImportError: lalic_cli.kernels:" in proc.stderr and "kernels/__init__.py is missing" in proc.stderr


def test_built_wheel_has_the_loader_and_not_the_shim(tmp_path):
    pytest.importorskip("setuptools")
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "weights.toml"):
        shutil.copy2(ROOT / name, src / name)
    for name in ("lalic_cli", "kernels", "assets"):
        shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.lal"))
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation", "-q",
         "-w", str(tmp_path / "dist")],
        capture_output=True, text=True, cwd=tmp_path,
    )
    if proc.returncode != 0:
        pytest.skip(f"cannot build a wheel here: {proc.stderr.strip().splitlines()[-1:]}")
    (wheel,) = (tmp_path / "dist").glob("lalic-*.whl")
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as z:
        z.extractall(site)
    installed = site / "lalic_cli" / "kernels"
    assert (installed / "__init__.py").read_bytes() == (ROOT / "kernels" / "__init__.py").read_bytes()
    assert {p.name for p in installed.iterdir()} >= {"biwkv_cpu.cpp", "biwkv_cuda.cu", "biwkv_common.h"}

    r = _probe(site, tmp_path)
    assert r["file"] == str(installed / "__init__.py") and r["here"] == str(installed)
    assert r["callable"] and r["bound"]
    assert r["data"] == str(site / "lalic_cli" / "data")
