"""Progress messages on stderr for long steps (loading large files, bootstrapping many cells)."""
from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    """Counts work units of one named step; prints at most every `interval_s` seconds.

    On a terminal the line is rewritten in place; otherwise (logs, CI) whole lines are printed.
    A disabled Progress prints nothing, so library code can always call it.
    """

    def __init__(self, enabled: bool = True, stream: TextIO | None = None, interval_s: float = 1.0):
        self.enabled = enabled
        self.stream = stream if stream is not None else sys.stderr
        self.interval_s = interval_s
        self._step = ""
        self._total = 0
        self._done = 0
        self._started = 0.0
        self._last_print = 0.0
        self._printed = False
        self._interactive = bool(getattr(self.stream, "isatty", lambda: False)())

    def start(self, step: str, total: int) -> None:
        self._step, self._total, self._done = step, max(int(total), 0), 0
        self._printed = False
        self._started = self._last_print = time.monotonic()

    def advance(self, units: int = 1) -> None:
        self._done += units
        now = time.monotonic()
        if self.enabled and now - self._last_print >= self.interval_s:
            self._last_print = now
            self._printed = True
            self._write(f"{self._step}: {self._done}/{self._total}", final=False)

    def finish(self) -> None:
        """Closes the step with its duration; quick steps that printed nothing stay silent."""
        elapsed = time.monotonic() - self._started
        if self.enabled and (self._printed or elapsed >= self.interval_s):
            self._write(f"{self._step}: {self._total}/{self._total} done in {elapsed:.1f} s", final=True)

    def note(self, message: str) -> None:
        if self.enabled:
            self._write(message, final=True)

    def _write(self, text: str, final: bool) -> None:
        if self._interactive:
            self.stream.write("\r\033[K" + text + ("\n" if final else ""))
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

