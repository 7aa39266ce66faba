"""The background garbage collector reports its passes on /metrics."""

from __future__ import annotations

import re
import time

import httpx
from support.server import RegistryFactory


def _runs(url: str) -> float:
    text = httpx.get(f"{url}/metrics", timeout=10).text
    found = re.search(r'^lading_gc_runs_total\{outcome="ok"\} ([0-9.e+]+)$', text, re.M)
    return float(found.group(1)) if found else 0.0


def test_background_gc_passes_show_on_metrics(lading_factory: RegistryFactory) -> None:
    server = lading_factory(env={"LADING_GC_INTERVAL_SECONDS": "0.2", "LADING_WORKERS": "1"})
    deadline = time.monotonic() + 30
    while _runs(server.url) < 2 and time.monotonic() < deadline:
        time.sleep(0.3)
    assert _runs(server.url) >= 2
