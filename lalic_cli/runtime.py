"""Process-wide tuning for the command-line tool; importing the library changes nothing."""

from __future__ import annotations

import ctypes
import functools
import sys
import warnings

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_NEVER = (1 << 31) - 1
# Blocks up to this size come from the reused heap: every activation up to about
# 2048x2048 (400 MB maps). Larger ones stay mmap'ed and go back to the system when freed.
_HEAP_MAX_BLOCK = 1 << 29
# For an image whose maps exceed that cap (4K: 800 MB float32 maps), only blocks up to
# this size: mixing big blocks in the heap with bigger ones outside it fragments the
# heap (the full model's 4K decode peaked at 9.5 GB with its 400 MB bf16 maps in the
# heap, 6.1 GB with them mmap'ed).
_HEAP_MAX_BLOCK_LARGE = 1 << 26
_tuned = False


def tune_allocator() -> bool:
    """Make glibc keep freed tensor memory in the process instead of unmapping it.

    By default every large tensor is a fresh ``mmap`` whose pages fault in on first
    touch, which costs about as much as the arithmetic on it (~15 ms for a 37 MB
    activation of a Kodak image). Reusing freed memory removes that. Returns whether
    the setting took (only on glibc). The process keeps its heap until it exits,
    which suits a command-line run.
    """
    global _tuned
    mallopt = _mallopt()
    if mallopt is None:
        return False
    _tuned = bool(mallopt(_M_MMAP_THRESHOLD, _HEAP_MAX_BLOCK)) and bool(mallopt(_M_TRIM_THRESHOLD, _NEVER))
    return _tuned


def fit_allocator(largest_block: int) -> None:
    """After :func:`tune_allocator`, size the reused heap for an image whose largest
    tensor takes ``largest_block`` bytes: all of its big blocks in the heap, or none."""
    mallopt = _mallopt() if _tuned else None
    if mallopt is not None:
        mallopt(_M_MMAP_THRESHOLD, _HEAP_MAX_BLOCK if largest_block <= _HEAP_MAX_BLOCK else _HEAP_MAX_BLOCK_LARGE)


@functools.cache
def _mallopt():
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return None


def one_line_warnings() -> None:
    """Show lalic's own warnings (the kernel fallback) as their message alone, one line,
    without Python's file, line and source line."""
    default = warnings.formatwarning

    def format_warning(message, category, filename, lineno, line=None) -> str:
        if str(message).startswith("lalic:"):
            return f"{message}\n"
        return default(message, category, filename, lineno, line)

    warnings.formatwarning = format_warning


def cpu_name() -> str:
    """The CPU's model name (for benchmark tables and golden-file manifests)."""
    import platform
    from pathlib import Path

    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
