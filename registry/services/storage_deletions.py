"""Storage objects whose rows are gone: queued, then deleted after commit.

Every deletion of bytes a row pointed at goes through ``gc_storage_deletions``:
the key is queued in the transaction that deletes the row, so the bytes go
only once that deletion is durable, and a removal that fails (storage down) or
never runs (the process died after commit) is retried by the next GC pass,
which flushes the queue. Garbage collection queues its own batches the same
way (``gc_tasks``); API deletes, repository deletes, retention and fsck use
this module.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from sqlalchemy import text
from sqlalchemy.orm import Session

from registry.db.engine import Database
from registry.db.raw import EPOCH_NOW
from storage.driver import Driver, ObjectNotFound, StorageError

log = logging.getLogger("lading.gc")

_QUEUE = (
    "INSERT INTO gc_storage_deletions (storage_key, size, queued_at) VALUES (:k, :s, {now})"
    " ON CONFLICT (storage_key) DO NOTHING"
)


def queue(session: Session, objects: Iterable[tuple[str, int]]) -> None:
    """Inside the transaction that deletes their rows: queue (key, size) objects."""
    params = [{"k": key, "s": size} for key, size in objects]
    if params:
        now = EPOCH_NOW[session.get_bind().dialect.name]
        session.execute(text(_QUEUE.format(now=now)), params)


def clear(db: Database, keys: list[str]) -> None:
    """Drop the queue rows of objects whose bytes are gone."""
    if not keys:
        return
    with db.write() as session:
        for start in range(0, len(keys), 500):
            session.execute(
                text("DELETE FROM gc_storage_deletions WHERE storage_key = :k"),
                [{"k": key} for key in keys[start : start + 500]],
            )


def delete_now(db: Database, driver: Driver, keys: Iterable[str]) -> list[str]:
    """After the commit that queued ``keys``: delete their bytes and clear the queue
    rows of those gone; a failure leaves its row for GC to retry. The keys deleted."""
    gone: list[str] = []
    for key in keys:
        try:
            driver.delete(key)
        except ObjectNotFound:
            pass  # a concurrent GC flush took it
        except StorageError as exc:
            log.warning("cannot delete %s yet (GC retries it): %s", key, exc)
            continue
        gone.append(key)
    try:
        clear(db, gone)
    except Exception:  # the bytes are gone; GC clears the rows when it finds them so
        log.warning("cannot clear %d queued storage deletions", len(gone), exc_info=True)
    return gone
