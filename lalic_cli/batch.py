"""``lalic encode/decode --jobs N``: the per-file work of a command in a pool of processes.

The workers are forked from the command once it has imported torch and loaded the
kernels, so none pays for those again, and each loads the model once (the loader
caches it per process) for all the files it gets. What a file's work prints is
captured in its worker and printed by the command in input order, so the output is
the one a serial run gives. Ctrl-C stops every worker: the one coding a file lets the
file's temporary output be removed, the others take no new file, and the command
exits as a serial run does.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
from concurrent.futures import ProcessPoolExecutor
from typing import Callable, Iterator

from rich.console import Console

from . import errors

__all__ = ["in_pool"]

# the work of one file and the console it prints on: set before the workers are forked
_job: tuple[Callable[[str], None], Console] | None = None
_busy = False
_stopped = False


class _NoTerminal:
    """A stream that is not a terminal for rich: no spinner in a worker."""

    def __init__(self, stream):
        self._stream = stream

    def isatty(self) -> bool:
        return False

    def __getattr__(self, name: str):
        return getattr(self._stream, name)


def _interrupted(_signum, _frame) -> None:
    global _stopped
    _stopped = True
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not interrupt the clean-up
    if _busy:
        raise KeyboardInterrupt


def _start_worker(threads: int | None) -> None:
    sys.stdout, sys.stderr = _NoTerminal(sys.stdout), _NoTerminal(sys.stderr)
    signal.signal(signal.SIGINT, _interrupted)
    if threads is not None:
        import torch

        torch.set_num_threads(threads)


def _work(item: str) -> tuple[str, str | None, bool]:
    """``(printed output, user error or None, interrupted)`` of one file."""
    global _busy
    one, console = _job
    if _stopped:
        return "", None, True
    with console.capture() as captured:
        _busy = True
        try:
            one(item)
            error = None
        except errors.USER_ERRORS as e:
            error = str(e)
        except KeyboardInterrupt:
            return "", None, True
        finally:
            _busy = False
    return captured.get(), error, False


def _warm_kernels() -> None:
    """Load (or build, once) the CPU kernels here, so that the workers inherit them."""
    from .kernels import load_extension

    load_extension("exact")
    load_extension("cpu")


def in_pool(items: list[str], one: Callable[[str], None], console: Console, jobs: int) -> Iterator[tuple[str, str | None]]:
    """Run ``one`` per item in ``jobs`` forked workers; yield ``(item, user error or None)``
    in input order, each after printing what its work printed."""
    global _job
    _warm_kernels()
    _job = (one, console)
    jobs = min(jobs, len(items))
    threads = None if "OMP_NUM_THREADS" in os.environ else max(1, (os.cpu_count() or 1) // jobs)
    pool = ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("fork"), initializer=_start_worker,
                               initargs=(threads,))
    try:
        futures = [pool.submit(_work, item) for item in items]
        for item, future in zip(items, futures):
            printed, error, interrupted = future.result()
            if interrupted:
                raise KeyboardInterrupt
            console.file.write(printed)
            console.file.flush()
            yield item, error
    except BaseException:
        for child in multiprocessing.active_children():  # they may not have had the Ctrl-C
            os.kill(child.pid, signal.SIGINT)
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    finally:
        _job = None
    pool.shutdown(wait=True)
