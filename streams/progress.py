"""A plain-text progress bar for CLI commands (no dependency)."""

from __future__ import annotations

from typing import TextIO


class ProgressBar:
    """``label [#######.............]  7/20``, redrawn in place on a terminal.

    On a terminal the line is rewritten with ``\\r``; otherwise (a pipe, a log, a test) a line
    is written at every 10 % step and at the end, so logs stay short.
    """

    def __init__(self, total: int, out: TextIO, *, label: str = "", width: int = 30) -> None:
        self.total = total
        self.done = 0
        self._out = out
        self._label = label
        self._width = width
        isatty = getattr(out, "isatty", None)
        self._tty = bool(isatty()) if callable(isatty) else False
        self._last_step = -1

    def render(self) -> str:
        filled = self._width if self.total == 0 else self._width * self.done // self.total
        bar = "#" * filled + "." * (self._width - filled)
        prefix = f"{self._label} " if self._label else ""
        return f"{prefix}[{bar}] {self.done}/{self.total}"

    def advance(self, step: int = 1) -> None:
        self.done = min(self.total, self.done + step)
        if self._tty:
            self._out.write("\r" + self.render())
            self._out.flush()
            return
        tenth = 10 if self.total == 0 else self.done * 10 // self.total
        if tenth != self._last_step or self.done == self.total:
            self._last_step = tenth
            self._out.write(self.render() + "\n")

    def finish(self) -> None:
        if self._tty:
            self._out.write("\r" + self.render() + "\n")
            self._out.flush()
        elif self._last_step < 0:  # nothing to do at all: still say so once
            self._out.write(self.render() + "\n")
