"""Sampling a process tree's resident memory in a background thread."""

from __future__ import annotations

import threading
from types import TracebackType

from support.server import tree_rss


class RssSampler:
    """``with RssSampler(pid) as s: ...`` then ``s.peak`` (bytes) and ``s.samples``."""

    def __init__(self, pid: int, interval: float = 0.05) -> None:
        self.pid = pid
        self.interval = interval
        self.peak = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"rss-{pid}", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def sample(self) -> int:
        rss = tree_rss(self.pid)
        self.peak = max(self.peak, rss)
        self.samples += 1
        return rss

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.sample()
