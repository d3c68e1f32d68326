"""Where lalic's run-time files are: weights.toml, the bundled weights, the sample image
and the C++/CUDA kernel sources.

They live at the top of the repository (``weights.toml``, ``weights/``, ``assets/``,
``kernels/``), so a checkout or an editable install reads them there.  A wheel has no
repository root: ``pyproject.toml`` copies the same files, in the same layout, into
``lalic_cli/data``, as package data of ``"lalic_cli.data" = "."``, a data-only package
that nothing imports (the wheel test checks that no Python file comes with them).  That
one line is the simplest way setuptools has to put top-level files into a package: its
``data-files`` are deprecated and land outside the package, and a build hook would add
a ``setup.py`` and a ``MANIFEST.in``.
"""

from __future__ import annotations

import os
from pathlib import Path

#: the distribution's name: its installed metadata (``lalic --version``) and its cache folder
DISTRIBUTION = "lalic"


def cache_home() -> Path:
    """``$XDG_CACHE_HOME/lalic`` or ``~/.cache/lalic``: imported weights and kernel builds
    live below it (each has its own environment variable to move it)."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / DISTRIBUTION


def data_dir() -> Path:
    """``lalic_cli/data`` in an installed wheel; the repository root in a checkout or an editable install."""
    installed = Path(__file__).with_name("data")
    if (installed / "weights.toml").is_file():
        return installed
    return Path(__file__).resolve().parents[1]
