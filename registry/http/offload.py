"""A dedicated thread pool for short blocking calls (database lookups).

``asyncio``'s executor hand-off costs about half of anyio's ``to_thread``
(cancellation checkpoints, capacity limiter), which matters on the hottest
paths such as manifest GETs; long transfers keep using anyio's threads.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")


class Offloader:
    def __init__(self, threads: int = 16) -> None:
        self._executor = ThreadPoolExecutor(threads, thread_name_prefix="lading-lookup")

    async def __call__(self, func: Callable[..., T], *args: object) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, func, *args)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
