"""A spinner with the elapsed time for work that turns out to be slow.

The codec gives no progress of its own (one image is one call), so the honest
display is "still working, for this long". It appears only after ``delay``
seconds, so quick images print nothing extra, and it is transient: when the
work ends the line is removed and the command prints its usual summary.
"""

from __future__ import annotations

import threading
from types import TracebackType

from rich.console import Console

__all__ = ["DelayedSpinner", "DEFAULT_DELAY"]

DEFAULT_DELAY = 2.0


class DelayedSpinner:
    """Context manager: show ``description``, a spinner and the elapsed time after ``delay`` s."""

    def __init__(self, console: Console, description: str, *, delay: float = DEFAULT_DELAY,
                 enabled: bool = True) -> None:
        self.console = console
        self.description = description
        self.delay = delay
        self.enabled = enabled
        self.shown = False
        self._lock = threading.Lock()
        self._closed = False
        self._progress = None
        self._timer: threading.Timer | None = None

    def __enter__(self) -> DelayedSpinner:
        if not self.enabled:
            return self
        from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        # Created now so that the elapsed time counts from the start of the work.
        self._progress = Progress(SpinnerColumn(), TextColumn("{task.description}", markup=False),
                                  TimeElapsedColumn(), console=self.console, transient=True)
        self._progress.add_task(self.description, total=None)
        self._timer = threading.Timer(self.delay, self._show)
        self._timer.daemon = True
        self._timer.start()
        return self

    def update(self, description: str) -> None:
        """Say where slow work is (e.g. a refinement's step); thread-safe, free when disabled."""
        if self._progress is not None:
            self._progress.update(self._progress.task_ids[0], description=description)

    def _show(self) -> None:
        with self._lock:
            if not self._closed:
                self._progress.start()
                self.shown = True

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
        with self._lock:
            self._closed = True
            if self.shown:
                self._progress.stop()
