"""A small tmpfs to fill up: the full-disk tests run real servers on one.

Mounting needs root: under ``CI=true`` not being able to mount fails, elsewhere it skips.
"""

from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from s3servers import ci_requires_tools

MIB = 1024 * 1024


def mount_tmpfs(where: Path, size_mib: int) -> None:
    where.mkdir(parents=True, exist_ok=True)
    try:
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size_mib}m", "tmpfs", str(where)],
            check=True,
            capture_output=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        reason = f"cannot mount a tmpfs (needs root): {exc}"
        if ci_requires_tools():
            pytest.fail(reason)
        pytest.skip(reason)


def unmount(where: Path) -> None:
    done = subprocess.run(["umount", str(where)], capture_output=True, timeout=10, check=False)
    if done.returncode != 0:
        # Something still holds a file open: detach now, the kernel frees it later.
        subprocess.run(["umount", "-l", str(where)], capture_output=True, timeout=10, check=False)


@contextmanager
def small_disk(where: Path, size_mib: int) -> Iterator[Path]:
    mount_tmpfs(where, size_mib)
    try:
        yield where
    finally:
        unmount(where)


def fill(path: Path, spare: int) -> None:
    """Write ``path`` until the filesystem has no byte left, then free ``spare`` bytes."""
    with path.open("wb", buffering=0) as filler:
        for size in (MIB, 4096, 1):
            block = b"\0" * size
            while True:
                try:
                    filler.write(block)
                except OSError as exc:
                    assert exc.errno == errno.ENOSPC, exc
                    break
        filler.truncate(filler.tell() - spare)


def free_bytes(path: Path) -> int:
    stats = os.statvfs(path)
    return stats.f_bavail * stats.f_frsize
