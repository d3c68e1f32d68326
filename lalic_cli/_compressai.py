"""Import CompressAI's coding parts without its unrelated subpackages.

lalic needs ``compressai.entropy_models``, ``compressai.latent_codecs``,
``compressai.layers`` and one class of ``compressai.models``. But a package's
``__init__`` runs before any of its submodules, and CompressAI's imports all of
its subpackages: the point-cloud datasets and models (torch_geometric, which
loads ``torch._dynamo``), a transform registry built from torchvision and
torch_geometric, pandas and more. That took 4.5 s of the 5.3 s a command spent
starting, several times what lalic itself needs.

:func:`defer` puts the heavy subpackages into ``sys.modules`` as *deferred
packages*: module objects made from their real import specs (same ``__path__``,
``__file__`` and ``__spec__``) whose ``__init__`` has not run yet. So:

- importing one of their submodules (``compressai.models.base``) works as
  usual and runs only that submodule;
- a few names are served from a light submodule that the real ``__init__``
  re-exports anyway (``register_module`` from ``compressai.registry.torch``,
  ``SimpleVAECompressionModel`` from ``compressai.models.base``);
- any other attribute access runs the real ``__init__`` in that same module
  object and then answers, so code that wants, say, ``compressai.zoo`` or
  ``compressai.models.Elic2022Official`` gets exactly what it would have got.

CompressAI's own ``__init__`` still runs (it holds the entropy-coder settings);
it binds the deferred subpackages without touching their attributes. Nothing is
copied or patched: the classes lalic uses are CompressAI's own. Stubbing the
parent package instead would also work, but would mean re-implementing the
entropy-coder settings that live in it.

``scipy.stats`` (about 1 s on a 2-core machine) is deferred the same way.
``compressai.entropy_models`` imports it for one call, the Gaussian quantile in
``GaussianConditional.update``, which builds the float coder tables. The portable
entropy path builds its tables with portable code, so an encode or decode on it never
touches ``scipy.stats``; the float path's first ``update`` runs its real ``__init__``.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import sys
import threading
from types import ModuleType

__all__ = ["DEFERRED", "defer", "is_deferred"]

#: deferred subpackage -> {light submodule: names its ``__init__`` re-exports from it, served before it runs}
DEFERRED: dict[str, dict[str, tuple[str, ...]]] = {
    "scipy.stats": {},
    "compressai.datasets": {},
    "compressai.losses": {},
    "compressai.optimizers": {},
    "compressai.transforms": {},
    "compressai.zoo": {},
    "compressai.registry": {"compressai.registry.torch": ("MODULES", "register_module")},
    "compressai.models": {"compressai.models.base": ("CompressionModel", "SimpleVAECompressionModel")},
}

_lock = threading.RLock()


def _deferred_package(spec: importlib.machinery.ModuleSpec, light: dict[str, tuple[str, ...]]) -> ModuleType:
    module = importlib.util.module_from_spec(spec)

    def __getattr__(name: str):
        if name.startswith("__") and name != "__all__":
            # Tools probe modules for dunders (__warningregistry__, __wrapped__, ...);
            # a package whose __init__ has not run has none, and need not run it to say so.
            raise AttributeError(f"module {spec.name!r} has no attribute {name!r}")
        with _lock:
            if module.__dict__.get("__getattr__") is not __getattr__:  # initialised meanwhile
                return getattr(module, name)
            for sub, names in light.items():
                if name in names:
                    value = getattr(importlib.import_module(sub), name)
                    setattr(module, name, value)
                    return value
            del module.__getattr__
            try:
                spec.loader.exec_module(module)
            except BaseException:
                module.__getattr__ = __getattr__
                raise
        return getattr(module, name)

    module.__getattr__ = __getattr__
    return module


def defer() -> None:
    """Register the heavy subpackages as deferred packages.

    A package whose parent is already imported is left alone (CompressAI's ``__init__``
    has then imported them all). Nothing is imported here: this costs a few
    file-system look-ups.
    """
    with _lock:
        roots: dict[str, list[str] | None] = {}
        for name, light in DEFERRED.items():
            root = name.rpartition(".")[0]
            if root not in roots:
                roots[root] = None if root in sys.modules else _search_locations(root)
            locations = roots[root]
            if locations is None or name in sys.modules:
                continue
            spec = importlib.machinery.PathFinder.find_spec(name, locations)
            if spec is None or spec.loader is None or spec.submodule_search_locations is None:
                continue
            sys.modules[name] = _deferred_package(spec, light)


def _search_locations(root: str) -> list[str] | None:
    try:
        spec = importlib.util.find_spec(root)
    except (ImportError, ValueError):
        return None
    return None if spec is None else spec.submodule_search_locations


def is_deferred(name: str) -> bool:
    """Whether ``name`` is a deferred package whose ``__init__`` has not run yet."""
    module = sys.modules.get(name)
    return module is not None and "__getattr__" in module.__dict__ and name in DEFERRED
