"""PostgreSQL: manifest, tag and repository deletes racing pushes and an aggressive
online GC over HTTP never answer 500 (a deadlock, 40P01, used to surface as one)."""

from __future__ import annotations

import functools
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from gcenv import database_url
from httpreg import PushRejected, make_image, push_image
from serverenv import database_env
from sqlalchemy import text
from support.server import RegistryFactory

from registry.db import migrate
from registry.db.engine import Database
from registry.services.gc import GarbageCollector
from storage.filesystem import FilesystemDriver

WORKERS = 6
DURATION = 15.0
REPOSITORIES = [f"deadlock/r{i}" for i in range(3)]
# Many images share these, listed in random orders, so deletes and GC touch the
# same blobs' review rows and links in different orders at the same time.
SHARED = [f"shared layer {i}\n".encode() * (50 + i) for i in range(12)]
ADMIN_TOKEN = "deadlock-admin-token-0123456789abcdef"


def _worker(
    url: str,
    index: int,
    stop: threading.Event,
    statuses: Counter[tuple[str, str, int]],
    failures: list[str],
    lock: threading.Lock,
) -> None:
    rng = random.Random(index)
    pushed: list[tuple[str, str, str]] = []  # (repository, tag, digest)

    def record(response: httpx.Response) -> None:
        response.read()
        path = response.request.url.path
        kind = next((k for k in ("admin", "manifests", "uploads", "blobs") if f"/{k}/" in path), "")
        key = (response.request.method, kind, response.status_code)
        with lock:
            statuses[key] += 1
            if response.status_code >= 500:
                failures.append(f"{key} {response.request.url}: {response.text[:300]}")

    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    with httpx.Client(base_url=url, timeout=60, event_hooks={"response": [record]}) as client:
        n = 0
        while not stop.is_set():
            n += 1
            roll = rng.random()
            if pushed and roll < 0.25:
                repo, _, digest = pushed.pop(rng.randrange(len(pushed)))
                client.delete(f"/v2/{repo}/manifests/{digest}")
            elif pushed and roll < 0.4:
                repo, tag, _ = pushed.pop(rng.randrange(len(pushed)))
                client.delete(f"/v2/{repo}/manifests/{tag}")
            elif roll < 0.46:
                client.delete(f"/admin/v1/repositories/{rng.choice(REPOSITORIES)}", headers=admin)
            else:
                repo = rng.choice(REPOSITORIES)
                layers = [*rng.sample(SHARED, 5), f"own {index}-{n}".encode() * 20]
                image = make_image(f"{index}-{n}", layers)
                tag = f"t{rng.randrange(8)}"  # few tags: pushes move them often
                try:
                    push_image(client, repo, tag, image)
                except (PushRejected, AssertionError):
                    continue  # a refused push is fine; a 500 is recorded above
                pushed.append((repo, tag, image.digest))


@pytest.mark.timeout(240)
def test_deletes_pushes_and_gc_never_deadlock_into_500(
    tmp_path: Path, lading_factory: RegistryFactory
) -> None:
    env = {
        **database_env("postgres", tmp_path),
        # Long enough for a push's blobs to meet their manifest, short enough that
        # collectors delete constantly.
        "LADING_GC_REVIEW_DELAY": "1.0",
        "LADING_GC_INTERVAL_SECONDS": "0.02",
        "LADING_ADMIN_TOKEN": ADMIN_TOKEN,
    }
    server = lading_factory(env=env, args=["--workers", "2"])
    statuses: Counter[tuple[str, str, int]] = Counter()
    failures: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()
    threads = [
        threading.Thread(target=_worker, args=(server.url, i, stop, statuses, failures, lock))
        for i in range(WORKERS)
    ]
    for thread in threads:
        thread.start()
    time.sleep(DURATION)
    stop.set()
    for thread in threads:
        thread.join(90)
    print(sorted(statuses.items()))
    assert not failures, failures[:10]
    # The hammer really hit every kind of write.
    assert statuses[("PUT", "manifests", 201)] > 50, statuses
    assert statuses[("DELETE", "manifests", 202)] > 20, statuses
    assert sum(n for (m, k, s), n in statuses.items() if (m, k) == ("DELETE", "admin")) > 0


BULK_REPOSITORIES = 8
BULK_MANIFESTS = 40  # per repository
BULK_BLOBS = 40


def _populate(db: Database, rng: random.Random) -> None:
    """Manifests of every repository share blobs, listed in random orders."""
    now = "2026-01-01T00:00:00+00:00"
    with db.transaction() as conn:
        conn.exec_driver_sql(
            "INSERT INTO repositories (id, name, created_at) VALUES (%s, %s, %s)",
            [(r + 1, f"bulk/r{r}", now) for r in range(BULK_REPOSITORIES)],
        )
        conn.exec_driver_sql(
            "INSERT INTO blobs (digest, size, storage_key, created_at) VALUES (%s, 1, %s, %s)",
            [(f"sha256:{b:064x}", f"blobs/none/{b}", now) for b in range(BULK_BLOBS)],
        )
        manifests, refs = [], []
        for r in range(BULK_REPOSITORIES):
            for m in range(BULK_MANIFESTS):
                mid = r * BULK_MANIFESTS + m + 1
                manifests.append((mid, r + 1, f"sha256:{mid:064x}", "x", 1, f"m/{mid}", now))
                refs += [(mid, f"sha256:{b:064x}") for b in rng.sample(range(BULK_BLOBS), 8)]
        conn.exec_driver_sql(
            "INSERT INTO manifests (id, repository_id, digest, media_type, size, storage_key,"
            " created_at) VALUES (%s, %s, %s, %s, %s, %s, %s)",
            manifests,
        )
        conn.exec_driver_sql(
            "INSERT INTO manifest_blobs (manifest_id, blob_digest) VALUES (%s, %s)", refs
        )


def _collector(db: Database, storage: Path, batch_size: int = 500) -> GarbageCollector:
    driver = FilesystemDriver(storage)
    return GarbageCollector(
        db, driver, review_delay=0, upload_purge_after=3600, batch_size=batch_size
    )


def _delete_repository(db: Database, repo_id: int) -> None:
    with db.write() as session:  # deliberately no retry
        session.execute(text("DELETE FROM manifests WHERE repository_id = :r"), {"r": repo_id})
        session.execute(text("DELETE FROM repositories WHERE id = :r"), {"r": repo_id})


def _collect(db: Database, storage: Path) -> None:
    collector = _collector(db, storage, batch_size=50)
    for _ in range(5):
        collector.run()


def test_concurrent_bulk_deletes_and_gc_never_deadlock(tmp_path: Path) -> None:
    """The review-queue triggers of many manifest deletes at once (repository
    deletes, retention) and collectors never wait on each other, so no deadlock
    (the upserting triggers of migration 0002 deadlocked here every round)."""
    db = Database(database_url("postgres", tmp_path))
    storage = tmp_path / "storage"
    try:
        migrate.upgrade(db)
        for round_ in range(3):
            _populate(db, random.Random(round_))
            errors: list[BaseException] = []
            start = threading.Barrier(BULK_REPOSITORIES + 2)

            def run(work: Callable[[], None]) -> None:
                try:
                    start.wait()  # noqa: B023 (joined before the next round)
                    work()
                except BaseException as exc:
                    errors.append(exc)  # noqa: B023

            works = [
                functools.partial(_delete_repository, db, r + 1) for r in range(BULK_REPOSITORIES)
            ] + [functools.partial(_collect, db, storage)] * 2
            threads = [threading.Thread(target=run, args=(w,)) for w in works]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(120)
            assert not errors, errors
            _collector(db, storage).run()
            left = db.fetch_all(
                "SELECT count(*) FROM manifests UNION ALL SELECT count(*) FROM blobs", {}
            )
            assert left == [(0,), (0,)], left
    finally:
        db.dispose()
