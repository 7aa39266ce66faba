"""A PATCH whose new state the database refuses to record loses nothing acknowledged.

The S3 writer stores a PATCH's bytes (parts, a new tail object) before the database
records the new state; when that record fails, the row still names the previous
state, whose tail must still be there. The database refuses for real: a trigger
makes every write of an upload's size fail as a full disk would (PostgreSQL: SQLSTATE
53100 disk_full), while the lease's release, which writes no size, still goes through.
"""

from __future__ import annotations

import contextlib
import hashlib
import random
import sqlite3
from collections.abc import Callable, Iterator

import psycopg
import pytest
from s3e2e_support import MiB, S3Target, patch, start_upload, with_digest
from support.postgres import wants_postgres
from support.server import RegistryServer

REPO = "s3e2e/unrecorded"
_SQLITE_REFUSE = (
    "CREATE TRIGGER refuse_size BEFORE UPDATE OF size ON upload_sessions"
    " BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END"
)
_PG_REFUSE = [
    "CREATE FUNCTION refuse_size() RETURNS trigger LANGUAGE plpgsql AS"
    " $$ BEGIN RAISE EXCEPTION 'could not extend file' USING ERRCODE = '53100'; END $$",
    "CREATE TRIGGER refuse_size BEFORE UPDATE OF size ON upload_sessions"
    " FOR EACH ROW EXECUTE FUNCTION refuse_size()",
]
_PG_ALLOW = ["DROP TRIGGER refuse_size ON upload_sessions", "DROP FUNCTION refuse_size()"]


def _run_sql(server: RegistryServer, statements: list[str]) -> None:
    if wants_postgres():
        url = (server.data_dir / "test-database-url").read_text().strip()
        with psycopg.connect(url.replace("+psycopg", ""), autocommit=True) as conn:
            for statement in statements:
                conn.execute(statement.encode())
        return
    with contextlib.closing(sqlite3.connect(server.data_dir / "lading.db", timeout=30)) as db:
        for statement in statements:
            db.execute(statement)
        db.commit()


@contextlib.contextmanager
def _refusing_size_writes(server: RegistryServer) -> Iterator[None]:
    _run_sql(server, _PG_REFUSE if wants_postgres() else [_SQLITE_REFUSE])
    try:
        yield
    finally:
        _run_sql(server, _PG_ALLOW if wants_postgres() else ["DROP TRIGGER refuse_size"])


@pytest.mark.parametrize("acked_size", [MiB, 6 * MiB], ids=["tail-only", "with-parts"])
def test_unrecorded_patch_keeps_the_upload(
    s3_lading: Callable[..., RegistryServer], s3: S3Target, acked_size: int
) -> None:
    server = s3_lading(LADING_S3_PART_SIZE=str(5 * MiB))
    rng = random.Random(acked_size)
    acked, refused, last = rng.randbytes(acked_size), rng.randbytes(MiB + 7), rng.randbytes(99)
    digest = "sha256:" + hashlib.sha256(acked + refused + last).hexdigest()
    with server.client(timeout=60) as client:
        url = patch(client, start_upload(client, REPO), 0, acked)
        # Its own connection: the server may close one after an internal error.
        with _refusing_size_writes(server), server.client(timeout=60) as refused_client:
            response = refused_client.patch(
                url,
                content=refused,
                headers={"Content-Range": f"{len(acked)}-{len(acked) + len(refused) - 1}"},
            )
        assert response.status_code >= 500, response.text
        status = client.get(url)
        assert status.status_code == 204, status.text
        assert status.headers["Range"] == f"0-{len(acked) - 1}"
        # The client resumes from the last acknowledged offset.
        url = patch(client, url, len(acked), refused)
        url = patch(client, url, len(acked) + len(refused), last)
        done = client.put(with_digest(url, digest), headers={"Content-Length": "0"})
        assert done.status_code == 201, done.text
        assert client.get(f"/v2/{REPO}/blobs/{digest}").content == acked + refused + last
    assert s3.upload_leftovers() == []
