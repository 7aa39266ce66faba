"""A database that refuses blob rows (a real trigger): a blob commit then fails after
its bytes are committed in storage, as when the database fails at that moment."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from gcenv import Env
from sqlalchemy import text

MESSAGE = "blob rows refused by the test"
_REFUSE = {
    "sqlite": [
        "CREATE TRIGGER test_refuse_blobs BEFORE INSERT ON blobs"
        f" BEGIN SELECT RAISE(ABORT, '{MESSAGE}'); END"
    ],
    "postgresql": [
        "CREATE FUNCTION test_refuse_blobs() RETURNS trigger LANGUAGE plpgsql AS"
        f" 'BEGIN RAISE EXCEPTION ''{MESSAGE}''; END'",
        "CREATE TRIGGER test_refuse_blobs BEFORE INSERT ON blobs"
        " FOR EACH ROW EXECUTE FUNCTION test_refuse_blobs()",
    ],
}
_ALLOW = {
    "sqlite": ["DROP TRIGGER test_refuse_blobs"],
    "postgresql": ["DROP TRIGGER test_refuse_blobs ON blobs", "DROP FUNCTION test_refuse_blobs()"],
}


def _run(env: Env, statements: dict[str, list[str]]) -> None:
    with env.db.write() as session:
        for sql in statements[session.get_bind().dialect.name]:
            session.execute(text(sql))


@contextmanager
def refusing_blob_rows(env: Env) -> Iterator[None]:
    _run(env, _REFUSE)
    try:
        yield
    finally:
        _run(env, _ALLOW)
