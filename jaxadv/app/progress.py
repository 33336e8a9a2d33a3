"""A minimal progress bar for long runs (stderr, with rate and time left)."""

from __future__ import annotations

import sys
import time
from typing import TextIO

__all__ = ["Progress"]


class Progress:
    """Progress over ``total`` units of work.

    On a terminal the bar redraws in place; otherwise (logs, CI) it prints a line at
    most every ``every`` seconds. ``enabled=False`` makes every call a no-op.
    """

    def __init__(
        self,
        total: int,
        label: str = "",
        enabled: bool = True,
        initial: int = 0,
        every: float = 10.0,
        stream: TextIO | None = None,
    ) -> None:
        self.total, self.label, self.enabled = max(int(total), 1), label, enabled
        self.stream = stream or sys.stderr
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.start, self.initial, self.done = time.monotonic(), initial, initial
        self.every, self.last = every, 0.0

    def update(self, done: int) -> None:
        self.done = done
        if not self.enabled:
            return
        now = time.monotonic()
        if not self.tty and now - self.last < self.every and done < self.total:
            return
        self.last = now
        elapsed = now - self.start
        rate = (done - self.initial) / elapsed if elapsed > 0 else 0.0
        left = (self.total - done) / rate if rate > 0 else float("nan")
        width = 30
        fill = int(width * done / self.total)
        msg = (
            f"{self.label} [{'#' * fill}{'.' * (width - fill)}] {done}/{self.total} "
            f"{elapsed:6.1f}s elapsed, {left:6.1f}s left"
        )
        self.stream.write(("\r" + msg) if self.tty else (msg + "\n"))
        self.stream.flush()

    def close(self) -> None:
        if self.enabled and self.tty:
            self.stream.write("\n")
            self.stream.flush()
