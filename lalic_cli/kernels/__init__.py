"""Just-in-time build of the BiWKV C++/CUDA extensions.

Layout: the C++/CUDA sources stay in the top-level ``kernels/`` folder, the
repository's compiled code beside its Python package, and this loader, a plain module of
the package, reads them from ``lalic_cli.resources.data_dir() / "kernels"``: the
repository root in a checkout or an editable install, ``lalic_cli/data`` in a wheel.
That is the rule every run-time file already follows (``weights.toml``, ``weights/``,
``assets/``), and pyproject's one ``package-dir`` entry, ``"lalic_cli.data" = "."``, a
data-only package that nothing imports, copies ``kernels/`` into the wheel with them.
So no import hook is needed: nothing maps or swaps ``lalic_cli.kernels`` in any of the
three.  Moving the sources into ``lalic_cli/kernels/`` would be as simple for the
kernels, but would leave ``kernels/`` empty and the data rule with an exception, while
``weights.toml``, which stays at the top level, keeps the mapping needed either way.

``load_extension("cpu" | "cuda" | "exact")`` compiles the sources once with
``torch.utils.cpp_extension.load`` (ninja), caches the build under ``$LALIC_CACHE`` /
``$XDG_CACHE_HOME/lalic`` / ``~/.cache/lalic`` in ``kernels/<kind>-<hash>``, and returns
the module, or None (with one warning line) when it cannot be built.  CPU kinds use the
machine's vector ISA (AVX2, AVX-512); ``LALIC_KERNEL_ISA=avx2`` or ``baseline`` (x86-64)
caps it, to run another ISA's code here (the portable path's bits must not change).  The
hash covers the sources (their bytes, not where they are), torch, Python, the machine and the
compiler flags (and the CUDA version and GPU architectures), so a cache shared between
machines is safe.  A build that finished (marked by ``built.ok``) is imported directly,
without importing cpp_extension.  A build takes about a minute, so the first one in a
process says so on stderr.  A failed build leaves its log in the build directory, named
by the compiler it used (path, size and date of ``$CXX`` and ninja): with that compiler
it is not tried again, and the warning points at the log.  Builds are serialised
between processes by a lock file in the build directory.  Results are memoised per
process.
"""

from __future__ import annotations

import hashlib
import importlib
import logging
import os
import platform
import shutil
import sys
import threading
import warnings
from contextlib import contextmanager
from pathlib import Path

from lalic_cli.errors import InputError, LalicError
from lalic_cli.resources import cache_home, data_dir

__all__ = ["cache_dir", "load_extension", "sources"]

_SRC = data_dir() / "kernels"  # the C++/CUDA sources and headers
_SOURCES = {"cpu": ["biwkv_cpu.cpp"], "cuda": ["biwkv_cuda.cpp", "biwkv_cuda.cu"], "exact": ["biwkv_exact.cpp", "exact_ops.cpp", "exact_gemm.cpp"]}
_HEADERS = ["biwkv_common.h", "exact_math.h", "exact_ops.h"]
_modules: dict = {}
_lock = threading.Lock()
_said: set[str] = set()  # lines this process has said on stderr: each once
_failures: list[str] = []  # kinds whose build failed in this process
NOTE = "lalic: building the BiWKV kernels for this machine (once, about a minute)"


class BuildFailed(RuntimeError):
    """A build that failed, now or before with the same compiler; the message says where its log is."""


def cache_dir() -> Path:
    root = os.environ.get("LALIC_CACHE")
    return (Path(root) if root else cache_home()) / "kernels"


ISA_CAPS = ("native", "avx2", "baseline")


def _cpu_flags() -> tuple[list[str], list[str]]:
    # -fno-trapping-math lets GCC turn the selects into vector blends (results unchanged)
    cflags, ldflags = ["-O3", "-fno-trapping-math"], []
    cap = os.environ.get("LALIC_KERNEL_ISA") or "native"
    if cap not in ISA_CAPS:  # a setting the user got wrong, not a build to fall back from
        raise InputError(f"unknown LALIC_KERNEL_ISA {cap!r} (one of {', '.join(ISA_CAPS)})")
    if sys.platform.startswith("linux"):
        cflags.append("-fopenmp")
        ldflags.append("-fopenmp")
        if platform.machine() in ("x86_64", "AMD64"):
            try:
                info = Path("/proc/cpuinfo").read_text()
                feats = next((ln for ln in info.splitlines() if ln.startswith("flags")), "").split()
            except OSError:
                feats = []
            if "avx2" in feats and "fma" in feats and cap != "baseline":
                cflags += ["-mavx2", "-mfma"]
                avx512 = ("avx512f", "avx512dq", "avx512vl", "avx512bw")
                if all(f in feats for f in avx512) and cap == "native":
                    # 16 float / 8 double lanes: the channel loops run 1.7x faster (same bits)
                    cflags += [f"-m{f}" for f in avx512] + ["-mprefer-vector-width=512"]
                    if "avx512_vnni" in feats:  # the integer GEMMs' one-instruction multiply-add
                        cflags.append("-mavx512vnni")
    return cflags, ldflags


def _cpu_key(kind: str) -> tuple[list[str], list[str], list[str]]:
    """Compiler flags and the cache key parts of a CPU kind, without cpp_extension."""
    import torch

    cflags, ldflags = _cpu_flags()
    if kind == "exact":
        # IEEE operations exactly as written (no contraction into FMA; fast-math is off
        # by default, and -fno-fast-math would turn trapping math back on, which stops
        # selects and floors from vectorising), so the vector width the ISA flags allow
        # cannot change a bit: each lane performs the same correctly rounded operation
        cflags = cflags + ["-ffp-contract=off"]
    key = [kind, torch.__version__, sys.implementation.cache_tag, platform.machine(), *cflags, *ldflags]
    return cflags, ldflags, key


def sources(kind: str) -> list[Path]:
    """The files a kind is built from: its sources and every header."""
    return [_SRC / s for s in _SOURCES[kind]] + [_SRC / h for h in _HEADERS]


def _tag(kind: str, key: list[str]) -> str:
    digest = hashlib.sha256()
    for path in sources(kind):
        digest.update(path.read_bytes())
    digest.update("\0".join(key).encode())
    return digest.hexdigest()[:16]


_DONE = "built.ok"  # written after a build succeeded: a library without it may be half-linked


def _load_built(name: str, build_dir: Path):
    """The extension of a finished build, imported directly: ``cpp_extension.load``
    would import setuptools and run ninja just to find nothing to do (~0.3 s)."""
    import importlib.util

    library = build_dir / f"{name}.so"
    if not (build_dir / _DONE).is_file() or not library.is_file():
        return None
    spec = importlib.util.spec_from_file_location(name, library)
    if spec is None:
        return None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _compiler() -> str:
    """What a failed build is remembered for: ``$CXX`` (or c++), ninja and ``$CUDA_HOME``,
    each by path, size and modification time, so installing or updating one retries."""
    parts = [os.environ.get("CUDA_HOME", "")]
    for name in (os.environ.get("CXX") or "c++", "ninja"):
        found = shutil.which(name)
        if found is None:
            parts.append(f"{name} missing")
            continue
        real = Path(found).resolve()
        stat = real.stat()
        parts.append(f"{name} {real} {stat.st_size} {stat.st_mtime_ns}")
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]


@contextmanager
def _exclusive(path: Path):
    """Hold a lock file while building: a second process waits, then finds the result."""
    try:
        import fcntl
    except ImportError:  # not POSIX: cpp_extension's own lock file still serialises the build
        yield
        return
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _say(line: str) -> None:
    if line not in _said:
        _said.add(line)
        print(line, file=sys.stderr, flush=True)


def _quietly(build):
    """Run a cpp_extension build without its warning banners (compiler ABI notices and
    the like): a failure is reported in one line, the details are in the log."""
    log = logging.getLogger("torch.utils.cpp_extension")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return build()
    finally:
        log.setLevel(level)


def _build(kind: str):
    import torch

    cuda_flags: list[str] = []
    if kind != "cuda":
        cflags, ldflags, key = _cpu_key(kind)
        tag = _tag(kind, key)
        module = _load_built(f"lalic_biwkv_{kind}_{tag}", cache_dir() / f"{kind}-{tag}")
        if module is not None:
            return module

    cpp_extension = _quietly(lambda: importlib.import_module("torch.utils.cpp_extension"))  # CUDA_HOME notice
    sources = [_SRC / s for s in _SOURCES[kind]]
    if kind == "cuda":
        cflags, ldflags, cuda_flags = ["-O3"], [], ["-O3"]
        key = [kind, torch.__version__, sys.implementation.cache_tag, platform.machine(),
               *cflags, *ldflags, *cuda_flags]
        if not torch.cuda.is_available():
            raise RuntimeError("CUDA is not available")
        home = cpp_extension.CUDA_HOME
        if home is None or not (Path(home) / "include" / "cuda_runtime_api.h").exists():
            raise RuntimeError(f"CUDA toolkit not found (CUDA_HOME={home}); set CUDA_HOME")
        caps = sorted({torch.cuda.get_device_capability(i) for i in range(torch.cuda.device_count())})
        key += [str(torch.version.cuda), str(caps), os.environ.get("TORCH_CUDA_ARCH_LIST", "")]
        tag = _tag(kind, key)
    name = f"lalic_biwkv_{kind}_{tag}"
    build_dir = cache_dir() / f"{kind}-{tag}"
    failed = build_dir / f"failed-{_compiler()}.log"
    compiler = os.environ.get("CXX") or "c++"
    if failed.is_file():
        raise BuildFailed(f"its build with {compiler} failed before; log: {failed}, delete it to retry")
    build_dir.mkdir(parents=True, exist_ok=True)
    with _exclusive(build_dir / "lalic.lock"):
        module = _load_built(name, build_dir)  # built by another process meanwhile
        if module is not None:
            return module
        if failed.is_file():
            raise BuildFailed(f"its build with {compiler} failed; log: {failed}")
        _say(NOTE)
        try:
            module = _quietly(lambda: cpp_extension.load(
                name=name,
                sources=[str(s) for s in sources],
                extra_cflags=cflags,
                extra_ldflags=ldflags,
                extra_cuda_cflags=cuda_flags,
                extra_include_paths=[str(_SRC)],
                build_directory=str(build_dir),
                verbose=False,
            ))
        except Exception as exc:  # noqa: BLE001 - any failure: remembered for this compiler
            failed.write_text(f"{type(exc).__name__}: {exc}\n")
            raise BuildFailed(f"its build with {compiler} failed; log: {failed}") from None
        (build_dir / _DONE).write_text("ok\n")
    return module


def load_extension(kind: str):
    """Return the compiled module for ``kind`` ("cpu", "cuda" or "exact", the portable path's
    operators), or None."""
    if kind not in _SOURCES:
        raise ValueError(f"unknown BiWKV kernel kind {kind!r}")
    with _lock:
        if kind not in _modules:
            try:
                _modules[kind] = _build(kind)
            except LalicError:
                raise
            except Exception as exc:  # noqa: BLE001 - any failure means "use the torch path"
                lines = str(exc).strip().splitlines()
                reason = lines[0] if lines else type(exc).__name__
                if not isinstance(exc, BuildFailed):  # ours are one line, with the log's path
                    reason = reason[:160]
                if not (isinstance(exc, BuildFailed) and _failures):  # one compiler: one line for all kinds
                    warnings.warn(
                        f"lalic: BiWKV {kind} kernel unavailable ({reason}); using the PyTorch path",
                        RuntimeWarning,
                        stacklevel=2,
                    )
                if isinstance(exc, BuildFailed):
                    _failures.append(kind)
                _modules[kind] = None
        return _modules[kind]
