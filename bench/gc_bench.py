"""Time one full online-GC pass over 10,000 manifests and 50,000 blobs per database.

Rows are inserted directly (the review triggers still fire, as on a real push),
every manifest is untagged and every review due (delay 0), so the pass deletes
everything: 10k manifests, then 50k blobs, in batches of ``--batches`` reviews
per transaction. Manifests hold their bytes in the row (as pushed since
migration 0009); blob storage keys point at no bytes, so the numbers are the
database side of GC (byte deletion adds one driver delete per blob).

    .venv/bin/python -m bench.gc_bench [--scale 0.1] [--databases sqlite,postgres]
        [--batches 20,500] [--churn-rounds 5]

It also reports the review-queue rows before and after the pass, and (unless
``--churn-rounds 0``) a busy registry inside the grace delay: every round moves
every tag and re-links a fifth of the blobs, then runs a pass with nothing due.
The queues must stay at one row per object instead of growing every round.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from registry.db import migrate
from registry.db.engine import Database
from registry.services.gc import GarbageCollector
from storage.filesystem import FilesystemDriver

BLOBS_PER_MANIFEST = 5
REPOSITORIES = 20


def _database_url(kind: str, workdir: Path) -> str:
    if kind == "postgres":
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
        from support.postgres import fresh_database_url

        return fresh_database_url()
    return f"sqlite:///{workdir / 'bench.db'}"


def populate(db: Database, manifests: int, blobs: int) -> None:
    now = "2026-01-01 00:00:00" if db.is_sqlite else "2026-01-01T00:00:00+00:00"
    with db.transaction() as conn:
        conn.exec_driver_sql(
            "INSERT INTO repositories (id, name, created_at) VALUES (?, ?, ?)"
            if db.is_sqlite
            else "INSERT INTO repositories (id, name, created_at) VALUES (%s, %s, %s)",
            [(r + 1, f"bench/repo{r}", now) for r in range(REPOSITORIES)],
        )
    mark = "?" if db.is_sqlite else "%s"

    def insert(sql: str, rows: list[tuple[object, ...]]) -> None:
        with db.transaction() as conn:
            conn.exec_driver_sql(sql.replace("?", mark), rows)

    insert(
        "INSERT INTO blobs (digest, size, storage_key, created_at) VALUES (?, ?, ?, ?)",
        [
            (f"sha256:{b:064x}", 1000 + b, f"blobs/sha256/{b % 256:02x}/{b:064x}.x", now)
            for b in range(blobs)
        ],
    )
    insert(
        "INSERT INTO repository_blobs (repository_id, blob_digest, created_at) VALUES (?, ?, ?)",
        [((b % REPOSITORIES) + 1, f"sha256:{b:064x}", now) for b in range(blobs)],
    )
    insert(
        # As pushed since migration 0009: the bytes in the row, no storage object.
        "INSERT INTO manifests (id, repository_id, digest, media_type, size, payload,"
        " created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        [
            (
                m + 1,
                (m % REPOSITORIES) + 1,
                f"sha256:{m:064x}",
                "application/json",
                500,
                b"{}".ljust(500),
                now,
            )
            for m in range(manifests)
        ],
    )
    # Manifest m references blobs of its own repository (blob b lives in b % REPOSITORIES).
    refs = []
    for m in range(manifests):
        for k in range(BLOBS_PER_MANIFEST):
            b = (m + k * manifests) % blobs
            b -= (b % REPOSITORIES) - (m % REPOSITORIES)
            if 0 <= b < blobs:
                refs.append((m + 1, f"sha256:{b:064x}"))
    insert("INSERT INTO manifest_blobs (manifest_id, blob_digest) VALUES (?, ?)", sorted(set(refs)))


def queue_rows(db: Database) -> int:
    rows = db.fetch_all(
        "SELECT count(*) FROM gc_manifest_reviews UNION ALL SELECT count(*) FROM gc_blob_reviews",
        {},
    )
    return sum(int(r[0]) for r in rows)


def _run(db: Database, sql: str, rows: list[tuple[object, ...]] | None = None) -> None:
    with db.transaction() as conn:
        conn.exec_driver_sql(sql if db.is_sqlite else sql.replace("?", "%s"), rows or ())


def churn(kind: str, manifests: int, blobs: int, rounds: int, batch: int) -> None:
    """Rounds of tag moves and re-links inside the grace delay, a pass after each."""
    with tempfile.TemporaryDirectory(prefix="gc-bench-") as tmp:
        workdir = Path(tmp)
        db = Database(_database_url(kind, workdir))
        try:
            migrate.upgrade(db)
            populate(db, manifests, blobs)
            now = "2026-01-01 00:00:00" if db.is_sqlite else "2026-01-01T00:00:00+00:00"
            _run(
                db,
                "INSERT INTO tags (repository_id, name, manifest_id, updated_at)"
                " VALUES (?, ?, ?, ?)",
                [((m % REPOSITORIES) + 1, f"t{m}", m + 1, now) for m in range(manifests)],
            )
            collector = GarbageCollector(
                db,
                FilesystemDriver(workdir / "storage"),
                review_delay=3600,  # nothing becomes due: everything stays queued
                upload_purge_after=86400,
                batch_size=batch,
            )
            relinks = blobs // 5
            print(
                f"{kind:<10} churn: {'round':>5} {'new events':>10} {'rows before':>11}"
                f" {'compacted':>9} {'rows after':>10} {'pass s':>7}"
            )
            for round_ in range(rounds + 1):
                before_events = queue_rows(db)
                if round_:
                    # Every tag to the next manifest of its repository (ids step by
                    # REPOSITORIES), so each previously tagged manifest gets an event.
                    _run(
                        db,
                        "UPDATE tags SET manifest_id = CASE WHEN manifest_id + ? <= ?"
                        " THEN manifest_id + ? ELSE manifest_id + ? - ? END",
                        [(REPOSITORIES, manifests, REPOSITORIES, REPOSITORIES, manifests)],
                    )
                    first = (round_ - 1) * relinks % blobs
                    picked = [(first + i) % blobs for i in range(relinks)]
                    _run(
                        db,
                        "DELETE FROM repository_blobs WHERE repository_id = ? AND blob_digest = ?",
                        [((b % REPOSITORIES) + 1, f"sha256:{b:064x}") for b in picked],
                    )
                    _run(
                        db,
                        "INSERT INTO repository_blobs (repository_id, blob_digest, created_at)"
                        " VALUES (?, ?, ?)",
                        [((b % REPOSITORIES) + 1, f"sha256:{b:064x}", now) for b in picked],
                    )
                before = queue_rows(db)
                started = time.perf_counter()
                report = collector.run(trigger="bench")
                elapsed = time.perf_counter() - started
                assert report.manifests_deleted == report.blobs_deleted == 0
                print(
                    f"{kind:<10} churn: {round_:>5} {before - before_events:>10} {before:>11}"
                    f" {report.events_compacted:>9} {queue_rows(db):>10} {elapsed:>7.1f}"
                )
                sys.stdout.flush()
        finally:
            db.dispose()


def bench(
    kind: str, manifests: int, blobs: int, batch: int
) -> tuple[float, float, int, int, int, int]:
    with tempfile.TemporaryDirectory(prefix="gc-bench-") as tmp:
        workdir = Path(tmp)
        db = Database(_database_url(kind, workdir))
        try:
            migrate.upgrade(db)
            started = time.perf_counter()
            populate(db, manifests, blobs)
            setup = time.perf_counter() - started
            collector = GarbageCollector(
                db,
                FilesystemDriver(workdir / "storage"),
                review_delay=0,
                upload_purge_after=86400,
                batch_size=batch,
            )
            queued = queue_rows(db)
            started = time.perf_counter()
            report = collector.run(trigger="bench")
            elapsed = time.perf_counter() - started
            left = queue_rows(db)
            return setup, elapsed, report.manifests_deleted, report.blobs_deleted, queued, left
        finally:
            db.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--databases", default="sqlite,postgres")
    parser.add_argument("--batches", default="20,500", help="reviews per transaction to try")
    parser.add_argument("--churn-rounds", type=int, default=5, help="busy rounds (0: none)")
    args = parser.parse_args()
    manifests, blobs = int(10_000 * args.scale), int(50_000 * args.scale)
    print(
        f"{'database':<10} {'batch':>5} {'manifests':>9} {'blobs':>7} {'setup s':>8} {'gc s':>8}"
        f" {'reviews/s':>10} {'queue before':>12} {'queue after':>11}"
    )
    for kind in args.databases.split(","):
        for batch in (int(b) for b in args.batches.split(",")):
            setup, elapsed, gone_m, gone_b, queued, left = bench(kind, manifests, blobs, batch)
            rate = (gone_m + gone_b) / elapsed if elapsed else 0.0
            print(
                f"{kind:<10} {batch:>5} {gone_m:>9} {gone_b:>7} {setup:>8.1f}"
                f" {elapsed:>8.1f} {rate:>10.0f} {queued:>12} {left:>11}"
            )
            sys.stdout.flush()
        if args.churn_rounds:
            batch = int(args.batches.split(",")[-1])
            churn(kind, manifests, blobs, args.churn_rounds, batch)


if __name__ == "__main__":
    main()
