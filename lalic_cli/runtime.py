"""Process-wide tuning for the command-line tool; importing the library changes nothing."""

from __future__ import annotations

import ctypes
import sys
import warnings

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_NEVER = (1 << 31) - 1
# Blocks up to this size come from the reused heap: every activation up to about
# 2048x2048 (400 MB maps). Larger ones (4K maps are 800 MB) stay mmap'ed and go back
# to the system when freed: in the heap they fragment it (with a 1 GB cap, the full
# model's 4K synthesis peaked at 8.3 GB instead of 4.9 GB).
_HEAP_MAX_BLOCK = 1 << 29


def tune_allocator() -> bool:
    """Make glibc keep freed tensor memory in the process instead of unmapping it.

    By default every large tensor is a fresh ``mmap`` whose pages fault in on first
    touch, which costs about as much as the arithmetic on it (~15 ms for a 37 MB
    activation of a Kodak image). Reusing freed memory removes that. Returns whether
    the setting took (only on glibc). The process keeps its heap until it exits,
    which suits a command-line run.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, _HEAP_MAX_BLOCK)) and bool(mallopt(_M_TRIM_THRESHOLD, _NEVER))


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
