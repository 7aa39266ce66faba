"""A collector never deletes, or waits on, a row another transaction holds (PostgreSQL:
FOR UPDATE SKIP LOCKED): it reviews the object again once the holder lets go."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from gcenv import Env
from sqlalchemy import text

from registry.services.gc import GcReport

HOLD_SECONDS = 1.5


def _collect_while_held(env: Env, lock_sql: str, params: dict[str, Any]) -> GcReport:
    """Run a pass while another transaction holds ``lock_sql``'s rows; check that the
    pass is still going (not blocked, not done) when the holder lets go."""
    held = threading.Event()
    release = threading.Event()

    def hold() -> None:
        with env.db.engine.connect() as conn, conn.begin():
            conn.execute(text(lock_sql), params)
            held.set()
            release.wait(30)

    holder = threading.Thread(target=hold)
    holder.start()
    assert held.wait(10)
    reports: list[GcReport] = []
    collector = threading.Thread(target=lambda: reports.append(env.collector().run()))
    started = time.monotonic()
    collector.start()
    time.sleep(HOLD_SECONDS)
    still_running = collector.is_alive()
    release.set()
    holder.join(10)
    collector.join(30)
    assert still_running, "the pass ended while an object it must review was held"
    assert reports, "the pass did not finish after the holder let go"
    assert time.monotonic() - started >= HOLD_SECONDS
    return reports[0]


@pytest.mark.parametrize("backend", ["postgres"])
def test_held_manifest_is_reviewed_after_its_holder_commits(env: Env) -> None:
    image = env.push_image("app", "v1", [b"layer"])
    env.manifests.delete("app", "v1")
    report = _collect_while_held(
        env, "SELECT id FROM manifests WHERE digest = :d FOR UPDATE", {"d": image["digest"]}
    )
    assert report.manifests_deleted == 1
    assert report.blobs_deleted == 2  # config and layer, in the same pass
    assert env.manifest_digests("app") == set() and env.blob_rows() == set()


@pytest.mark.parametrize("backend", ["postgres"])
@pytest.mark.parametrize("table", ["blobs", "repository_blobs"])
def test_held_blob_or_link_is_reviewed_after_its_holder_commits(env: Env, table: str) -> None:
    blob = env.push_blob("app", b"pushed, never referenced")
    column = "digest" if table == "blobs" else "blob_digest"
    report = _collect_while_held(
        env,
        f"SELECT 1 FROM {table} WHERE {column} = :d FOR UPDATE",
        {"d": blob["digest"]},
    )
    assert report.links_deleted == 1 and report.blobs_deleted == 1
    assert env.linked_blobs("app") == set() and env.blob_rows() == set()
    assert list(env.driver.list("blobs")) == []
