"""Progress of long loops (embedding texts, scoring inputs) as a person and a log file want it.

* On a terminal: a tqdm bar on stderr.
* Not on a terminal (a log file, a pipe, a batch job): no carriage returns; one line per quarter
  of the work, e.g. ``mlsupcon: embedding with all-MiniLM-L6-v2: 50% (5000/10000 texts, 61 s)``.
* Turned off (``progress=False`` of a call, or :func:`set_enabled` ``(False)`` process-wide: what
  the CLI's ``--no-progress`` does): nothing.

Only the standard library is imported here (tqdm when a bar is drawn).

Example:
    >>> import io
    >>> out = io.StringIO()
    >>> bar = progress_bar(8, "embedding", "texts", stream=out)
    >>> for _ in range(8):
    ...     bar.update(1)
    >>> bar.close()
    >>> [line.split(" (")[0] for line in out.getvalue().splitlines()]
    ['mlsupcon: embedding: 25%', 'mlsupcon: embedding: 50%', 'mlsupcon: embedding: 75%', 'mlsupcon: embedding: 100%']
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

__all__ = ["progress_bar", "set_enabled", "is_enabled", "is_interactive", "LineProgress"]

_ENABLED = True


def set_enabled(enabled: bool) -> None:
    """Turns every mlsupcon progress report of this process on or off (``--no-progress``)."""
    global _ENABLED
    _ENABLED = bool(enabled)


def is_enabled() -> bool:
    """Whether progress reports are on for this process."""
    return _ENABLED


def is_interactive(stream: Any = None) -> bool:
    """Whether ``stream`` (default stderr) is a terminal, where a redrawn bar makes sense."""
    stream = sys.stderr if stream is None else stream
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # closed or not a file
        return False


class LineProgress:
    """A progress report for logs: one line each time another ``step`` of the total is done."""

    def __init__(self, total: int, desc: str, unit: str, stream: TextIO | None = None, step: float = 0.25) -> None:
        self.total, self.desc, self.unit, self.step = int(total), desc, unit, float(step)
        self.stream = stream
        self.done = 0
        self._next = self.step
        self._start = time.perf_counter()

    def update(self, n: int = 1) -> None:
        self.done += int(n)
        if self.total <= 0:
            return
        share = self.done / self.total
        if share + 1e-12 >= self._next:
            while self._next <= share + 1e-12:
                self._next += self.step
            stream = self.stream if self.stream is not None else sys.stderr  # looked up now: redirections apply
            print(f"mlsupcon: {self.desc}: {min(100, round(100 * share))}% ({self.done}/{self.total} {self.unit}, "
                  f"{time.perf_counter() - self._start:.0f} s)", file=stream, flush=True)

    def close(self) -> None:
        pass


class _NoProgress:
    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


def progress_bar(total: int, desc: str, unit: str, enabled: bool = True, stream: TextIO | None = None) -> Any:
    """A bar (terminal), quarter lines (log) or nothing (off): an object with ``update(n)`` and ``close()``."""
    if not (enabled and _ENABLED):
        return _NoProgress()
    if is_interactive(stream):
        from tqdm.auto import tqdm

        return tqdm(total=total, desc=desc, unit=unit.rstrip("s") or unit, file=stream or sys.stderr, leave=False)
    return LineProgress(total, desc, unit, stream)
