"""A level disk for every server's push workload.

A 1 GiB push with fsync can go no faster than the disk makes bytes durable. On a
thin-provisioned virtual disk (this machine's) that depends on the blocks: writing
blocks the filesystem never used, or used long ago, runs at ~370 MiB/s, while
blocks that were just freed are rewritten at 1.3-2 GB/s. Which kind a push gets
depends on what ran before it, which once made the same server's pushes vary 2x
between runs.

So before each server's push workload the bench writes (with fsync) and then deletes
as much as the pushes will store: the pushes of every server then land on freshly
freed blocks, and the bench measures the registries rather than the disk's history.
The rate of that fill is reported too: it is what a push onto never-used blocks
could reach at most.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

MiB = 1024 * 1024
FILE_MIB = 256
WRITE_MIB = 16  # write + fsync unit, like one 16 MiB PATCH


def _fill(path: Path, block: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        for _ in range(FILE_MIB // WRITE_MIB):
            view = memoryview(block)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
    finally:
        os.close(fd)


def level(directory: Path, mib: int) -> dict[str, float]:
    """Write ``mib`` MiB under ``directory`` with fsyncs, then delete it all.

    Returns the fill rate in MiB/s (durable writes onto whatever blocks the
    filesystem handed out, usually never-used ones).
    """
    block = os.urandom(WRITE_MIB * MiB)
    work = Path(tempfile.mkdtemp(prefix="disk-level-", dir=directory))
    files = []
    t0 = time.perf_counter()
    try:
        for i in range(max(1, mib // FILE_MIB)):
            files.append(work / f"fill{i}")
            _fill(files[-1], block)
        elapsed = time.perf_counter() - t0
    finally:
        for f in files:
            f.unlink(missing_ok=True)
        work.rmdir()
        os.sync()  # the frees reach the disk before the pushes start
    return {"disk_fill_mbs": round(len(files) * FILE_MIB / elapsed, 1)}
