"""SQLite group commit: concurrent transactions share a commit but fail alone."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from registry.db.engine import Database
from registry.db.raw import RawTx


class Boom(Exception):
    pass


@pytest.fixture
def db(tmp_path: Path) -> Database:
    database = Database(f"sqlite:///{tmp_path / 'g.db'}")
    with database.raw_transaction() as tx:
        tx.run("CREATE TABLE items (name TEXT PRIMARY KEY, n INTEGER NOT NULL)", {})
    return database


def _names(path: Path) -> set[str]:
    # A fresh connection: only what was committed is visible.
    with sqlite3.connect(path) as conn:
        return {row[0] for row in conn.execute("SELECT name FROM items")}


def test_concurrent_jobs_commit_and_failures_stay_alone(db: Database, tmp_path: Path) -> None:
    barrier = threading.Barrier(24)
    results: dict[int, object] = {}

    def work(i: int) -> None:
        def job(tx: RawTx) -> int:
            tx.run("INSERT INTO items (name, n) VALUES (:name, :n)", {"name": f"a{i}", "n": i})
            if i % 5 == 0:
                raise Boom(i)  # after a successful insert: that insert must be undone
            if i % 7 == 0:
                # A failing statement (duplicate key) after a successful one.
                tx.run("INSERT INTO items (name, n) VALUES (:name, 0)", {"name": f"a{i}"})
            return i * 10

        barrier.wait()
        try:
            results[i] = db.run_raw(job)
        except Exception as exc:
            results[i] = exc

    threads = [threading.Thread(target=work, args=(i,)) for i in range(24)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    failed = {i for i in range(24) if i % 5 == 0 or i % 7 == 0}
    for i in range(24):
        if i in failed:
            assert isinstance(results[i], Boom | sqlite3.IntegrityError), results[i]
        else:
            assert results[i] == i * 10
    # Every acknowledged job is durable the moment run_raw returned; no failed one is.
    assert _names(tmp_path / "g.db") == {f"a{i}" for i in range(24) if i not in failed}


def test_jobs_see_earlier_jobs_of_the_same_batch(db: Database) -> None:
    db.run_raw(lambda tx: tx.run("INSERT INTO items (name, n) VALUES ('x', 1)", {}))
    counted = db.run_raw(lambda tx: tx.one("SELECT count(*) FROM items", {}))
    assert counted == (1,)


def test_a_failed_commit_fails_every_job_and_the_next_one_works(
    db: Database, tmp_path: Path
) -> None:
    def lock_out(tx: RawTx) -> None:
        tx.run("INSERT INTO items (name, n) VALUES ('kept', 1)", {})

    db.run_raw(lock_out)

    # A job that breaks the transaction itself (not only its statement) takes the
    # batch down; the committer must recover with a fresh transaction afterwards.
    def commit_behind_its_back(tx: RawTx) -> None:
        tx.run("COMMIT", {})

    with pytest.raises(sqlite3.OperationalError):
        db.run_raw(commit_behind_its_back)
    db.run_raw(lambda tx: tx.run("INSERT INTO items (name, n) VALUES ('after', 2)", {}))
    assert {"kept", "after"} <= _names(tmp_path / "g.db")
