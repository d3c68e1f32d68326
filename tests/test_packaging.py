"""lalic finds its kernel sources and data files from a checkout, an editable install
and a built wheel.

The C++/CUDA sources stay in the top-level ``kernels/`` folder, beside ``weights.toml``,
``weights/`` and ``assets/``; ``lalic_cli.resources.data_dir()`` is the repository root
in a checkout or an editable install, and ``lalic_cli/data`` in a wheel, where pyproject
copies those files.  ``lalic_cli.kernels`` is an ordinary module everywhere.  The
checkout and wheel checks run ``python -S`` (no site-packages, so no installed or
editable lalic can answer instead) with ``sys.path`` holding only the tree under test.
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
KINDS = ("cpu", "cuda", "exact")
DATA = ("weights.toml", "assets/sample.png", "kernels/biwkv_cpu.cpp", "kernels/biwkv_cuda.cu", "kernels/exact_ops.h")

PROBE = textwrap.dedent(
    """
    import json, sys
    if len(sys.argv) > 1:
        sys.path[:0] = [sys.argv[1]]
    import lalic_cli, lalic_cli.kernels as k
    from lalic_cli.resources import data_dir
    print(json.dumps({
        "package": lalic_cli.__file__,
        "loader": k.__file__,
        "sources": str(k._SRC),
        "missing": [str(p) for kind in %r for p in k.sources(kind) if not p.is_file()],
        "callable": callable(k.load_extension),
        "data": str(data_dir()),
    }))
    """ % (KINDS,)
)


def _probe(python: list[str], cwd: Path, tree: Path | None = None) -> dict:
    proc = subprocess.run([*python, "-c", PROBE, *([str(tree)] if tree else [])], capture_output=True, text=True,
                          cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.splitlines()[-1])


def _check(r: dict, package: Path, data: Path) -> None:
    assert r["package"] == str(package / "__init__.py")
    assert r["loader"] == str(package / "kernels" / "__init__.py")
    assert r["data"] == str(data) and r["sources"] == str(data / "kernels")
    assert r["missing"] == [] and r["callable"]
    assert all((data / name).is_file() for name in DATA)


def test_checkout_reads_the_top_level_files():
    _check(_probe([sys.executable, "-S"], ROOT, ROOT), ROOT / "lalic_cli", ROOT)


def _source_tree(tmp_path: Path) -> Path:
    """What a build needs, copied: pip writes build/ and *.egg-info into the tree it installs."""
    pytest.importorskip("setuptools")
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "weights.toml"):
        shutil.copy2(ROOT / name, src / name)
    for name in ("lalic_cli", "kernels", "weights", "assets"):
        shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.lal"))
    return src


def test_built_wheel_carries_them_in_lalic_cli_data(tmp_path):
    src = _source_tree(tmp_path)
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation", "-q",
         "-w", str(tmp_path / "dist")],
        capture_output=True, text=True, cwd=tmp_path,
    )
    if proc.returncode != 0:
        pytest.skip(f"cannot build a wheel here: {proc.stderr.strip().splitlines()[-1:]}")
    (wheel,) = (tmp_path / "dist").glob("lalic-*.whl")
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        z.extractall(tmp_path / "site")
    # the repository root is copied as data only: no Python file of it, and nothing at the top
    assert not [n for n in names if n.startswith("lalic_cli/data/") and n.endswith(".py")]
    assert {n.split("/")[0] for n in names} == {"lalic_cli", wheel.name.split("-py3")[0] + ".dist-info"}
    installed = tmp_path / "site" / "lalic_cli"
    for name in ("kernels/biwkv_cpu.cpp", "kernels/biwkv_common.h", "weights.toml"):
        assert (installed / "data" / name).read_bytes() == (ROOT / name).read_bytes()

    _check(_probe([sys.executable, "-S"], tmp_path, tmp_path / "site"), installed, installed / "data")


def test_editable_install_reads_the_checkout(tmp_path):
    """pip install -e into a throwaway environment, run from another folder."""
    src = _source_tree(tmp_path)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", "--system-site-packages", str(venv)], check=True)
    python = venv / "bin" / "python"
    if not python.is_file():
        pytest.skip("no POSIX virtual environment here")
    proc = subprocess.run(
        # compat mode: a .pth path entry, which precedes the system site-packages that the
        # venv sees (where CI has installed lalic itself); the default finder would come after
        [sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps", "--no-build-isolation",
         "--config-settings", "editable_mode=compat", "-e", str(src)],
        capture_output=True, text=True, cwd=tmp_path,
    )
    if proc.returncode != 0:
        pytest.skip(f"cannot install in editable mode here: {proc.stderr.strip().splitlines()[-1:]}")
    _check(_probe([str(python)], tmp_path), src / "lalic_cli", src)
