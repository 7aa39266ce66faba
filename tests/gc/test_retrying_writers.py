"""PostgreSQL: a blob mount and ``fsck --repair`` that lose a deadlock (40P01) retry
their transaction and succeed instead of failing.

Each test makes the deadlock happen for sure: another transaction holds a row the
writer needs next, waits until the writer blocks on it, then asks for a row the
writer already holds. The writer's backend detects the cycle (the other side's
``deadlock_timeout`` is set long) and rolls the writer back.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from gcenv import Env, database_url, digest_of
from sqlalchemy import Connection, create_engine, text

from registry.domain.digests import parse_digest
from registry.services.fsck import FsckService


@pytest.fixture
def pg_env(tmp_path: Path) -> Iterator[Env]:
    created = Env.create(database_url("postgres", tmp_path), tmp_path / "storage")
    yield created
    created.db.dispose()


def _run_in_thread(work: Callable[[], Any]) -> tuple[threading.Thread, dict[str, Any]]:
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["result"] = work()
        except BaseException as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    return thread, outcome


def _wait_until_blocked(conn: Connection, deadline: float = 20.0) -> None:
    """Until some other backend of this database waits for a row lock."""
    stop = time.monotonic() + deadline
    while time.monotonic() < stop:
        waiting = conn.execute(
            text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND pid <> pg_backend_pid() AND wait_event_type = 'Lock'"
            )
        ).scalar_one()
        if waiting:
            return
        time.sleep(0.02)
    raise AssertionError("the writer never blocked on the held row")


def _deadlock(
    env: Env, first: str, then: str, params: dict[str, Any], work: Callable[[], Any]
) -> Any:
    """Hold ``first`` (FOR UPDATE), start ``work``, once it blocks run ``then``."""
    engine = create_engine(env.db.url)
    try:
        with engine.connect() as conn, conn.begin():
            conn.execute(text("SET LOCAL deadlock_timeout = '60s'"))
            conn.execute(text(first), params)
            thread, outcome = _run_in_thread(work)
            _wait_until_blocked(conn)
            conn.execute(text(then), params)  # completes once the writer is rolled back
        thread.join(60)
    finally:
        engine.dispose()
    assert not thread.is_alive()
    assert "error" not in outcome, outcome["error"]
    return outcome["result"]


def _retries(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "40P01" in r.getMessage()]


@pytest.mark.timeout(120)
def test_mount_retries_after_a_deadlock(pg_env: Env, caplog: pytest.LogCaptureFixture) -> None:
    layer = b"mounted layer\n" * 100
    pg_env.push_blob("mount/src", layer)
    pg_env.push_blob("mount/dst", layer)  # the mount renews this link
    digest = digest_of(layer)
    link = (
        "SELECT 1 FROM repository_blobs WHERE blob_digest = :d AND repository_id ="
        " (SELECT id FROM repositories WHERE name = :r{}) FOR UPDATE"
    )
    caplog.set_level(logging.INFO, logger="lading.db")
    info = _deadlock(
        pg_env,
        link.format("dst"),  # the mount upserts this link after share-locking the source
        link.format("src"),  # ... whose link the mount holds FOR SHARE
        {"d": digest, "rdst": "mount/dst", "rsrc": "mount/src"},
        lambda: pg_env.blobs.mount("mount/dst", "mount/src", parse_digest(digest)),
    )
    assert info is not None and info.size == len(layer)
    assert _retries(caplog), "the mount did not meet a deadlock"
    assert digest in pg_env.linked_blobs("mount/dst")


@pytest.mark.timeout(120)
def test_fsck_repair_retries_after_a_deadlock(
    pg_env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    base = b"base layer whose bytes get lost\n" * 100
    first = pg_env.push_image("fsck/app", "one", [base, b"own layer 1\n" * 10])
    second = pg_env.push_image("fsck/app", "two", [base, b"own layer 2\n" * 10])
    digest = digest_of(base)
    key = pg_env.db.fetch_one("SELECT storage_key FROM blobs WHERE digest = :d", {"d": digest})
    assert key is not None
    pg_env.driver.delete(str(key[0]))
    caplog.set_level(logging.INFO, logger="lading.db")
    report = _deadlock(
        pg_env,
        # Repair deletes the manifests needing the blob, then the blob row: held here.
        "SELECT 1 FROM blobs WHERE digest = :d FOR UPDATE",
        "DELETE FROM manifests WHERE digest = :m",  # a manifest repair has deleted
        {"d": digest, "m": first["digest"]},
        lambda: FsckService(pg_env.db, pg_env.driver).check(repair=True),
    )
    assert _retries(caplog), "the repair did not meet a deadlock"
    assert report.missing_blobs == [digest]
    assert report.removed_blobs == [digest]
    # The other transaction deleted the first manifest; the retried repair the second.
    assert report.removed_manifests == [("fsck/app", second["digest"])]
    assert pg_env.manifest_digests("fsck/app") == set()
    assert digest not in pg_env.blob_rows()
