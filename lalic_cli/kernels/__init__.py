"""``lalic_cli.kernels`` in a source checkout: the top-level ``kernels/`` package.

The kernel sources and their loader live in ``kernels/`` at the repository root,
and ``pyproject.toml`` installs that folder as ``lalic_cli.kernels``
(``[tool.setuptools.package-dir]``); this file is not part of a built package.
It exists for the checkout itself: run from the repository root, Python imports
``lalic_cli`` from the source tree, which would otherwise have no
``lalic_cli.kernels`` (an installed copy is shadowed, and only an editable
install maps the name).

It loads ``kernels/__init__.py`` under this module's name and puts that module in
its place, so that ``lalic_cli.kernels`` is the same loader, with the same
``__file__`` next to its C++/CUDA sources, whether lalic runs from a wheel, an
editable install or a plain checkout.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

_SOURCE = Path(__file__).resolve().parents[2] / "kernels" / "__init__.py"
if not _SOURCE.is_file():
    raise ImportError(f"lalic_cli.kernels: {_SOURCE} is missing (the checkout is incomplete)", name=__name__)

_spec = importlib.util.spec_from_file_location(__name__, _SOURCE, submodule_search_locations=[str(_SOURCE.parent)])
_module = importlib.util.module_from_spec(_spec)
sys.modules[__name__] = _module
try:
    _spec.loader.exec_module(_module)
except BaseException:
    del sys.modules[__name__]
    raise
