"""A progress bar on stderr, shown only once a run has lasted a few seconds."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO


class Progress:
    """Counts finished runs; after `after_s` seconds it redraws one line per update."""

    def __init__(
        self,
        total: int,
        *,
        stream: TextIO | None = None,
        after_s: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
        width: int = 30,
    ) -> None:
        self.total = max(total, 1)
        self.done = 0
        self._stream = stream if stream is not None else sys.stderr
        self._after_s = after_s
        self._clock = clock
        self._started = clock()
        self._width = width
        self._shown = False

    def advance(self, runs: int = 1) -> None:
        self.done += runs
        elapsed = self._clock() - self._started
        if elapsed < self._after_s:
            return
        filled = round(self._width * self.done / self.total)
        bar = "#" * filled + "." * (self._width - filled)
        self._stream.write(f"\rreplay [{bar}] {self.done}/{self.total} runs, {elapsed:.1f} s")
        self._stream.flush()
        self._shown = True

    def close(self) -> None:
        if self._shown:
            self._stream.write("\n")
            self._stream.flush()
