"""Progress for people on stderr (``lading gc``, ``gc-remote run``, ``retention apply``,
``repo rm``) and human-readable sizes; stdout stays for results."""

from __future__ import annotations

import sys
import threading
import time
from types import TracebackType
from typing import TextIO


def human(size: int | None) -> str:
    if size is None:
        return "-"
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{size} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


class ProgressBar:
    """One line on stderr, redrawn in place: a bar (``label phase [###---] done/total``)
    or a running count (``note``).

    With ``only_tty`` nothing is drawn unless the stream is a terminal, so a CI log or a
    script capturing stderr gets only the final line of ``close``.
    """

    def __init__(
        self, label: str, stream: TextIO | None = None, width: int = 30, only_tty: bool = False
    ) -> None:
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self.width = width
        self.tty = self.stream.isatty()
        self.enabled = self.tty or not only_tty
        self.drawn = False

    def _draw(self, text: str) -> None:
        if not self.enabled:
            return
        # On a terminal, also clear what a longer previous line left behind.
        self.stream.write(("\r\x1b[2K" if self.tty else "\r") + text)
        self.stream.flush()
        self.drawn = True

    def __call__(self, phase: str, done: int, total: int, detail: str = "") -> None:
        filled = self.width * min(done, total) // max(total, 1)
        bar = "#" * filled + "-" * (self.width - filled)
        suffix = f" {detail}" if detail else ""
        self._draw(f"{self.label} {phase:<9} [{bar}] {done}/{total}{suffix}")

    def note(self, text: str) -> None:
        self._draw(f"{self.label} {text}")

    def close(self, final: str | None = None) -> None:
        """End the line; ``final`` is always written (a summary for logs too)."""
        if self.drawn:
            self.stream.write("\n")
        if final is not None:
            self.stream.write(final + "\n")
        self.stream.flush()


class Ticker:
    """While one long request runs, count its seconds on the bar's line."""

    def __init__(self, bar: ProgressBar, text: str, interval: float = 0.5) -> None:
        self.bar = bar
        self.text = text
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._tick, name="lading-ticker", daemon=True)

    def _tick(self) -> None:
        started = time.monotonic()
        while True:
            self.bar.note(f"{self.text} {time.monotonic() - started:.0f}s")
            if self._stop.wait(self.interval):
                return

    def __enter__(self) -> Ticker:
        if self.bar.enabled:
            self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
