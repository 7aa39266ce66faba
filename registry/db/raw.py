"""Thin raw-DBAPI transactions for the hottest write paths.

Building SQLAlchemy statements costs ~100 µs each; a manifest push runs
about ten of them inside the SQLite write lock, which caps tag pushes per
second. Here SQL is plain text with ``:name`` parameters, translated for
psycopg, and executed on a pooled DBAPI connection.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Sequence
from typing import Any

_NAMED_PARAM = re.compile(r"(?<![:\w]):(\w+)")


def to_pyformat(sql: str) -> str:
    return _NAMED_PARAM.sub(r"%(\1)s", sql)


class RawTx:
    """One open transaction; statements use ``:name`` parameters."""

    def __init__(self, cursor: Any, dialect: str) -> None:
        self._cursor = cursor
        self.dialect = dialect

    @property
    def is_postgres(self) -> bool:
        return self.dialect == "postgresql"

    def _sql(self, sql: str) -> str:
        return sql if self.dialect == "sqlite" else to_pyformat(sql)

    def timestamp(self, value: dt.datetime | None = None) -> Any:
        """A UTC timestamp in the form SQLAlchemy's models read back."""
        value = (value or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)
        if self.dialect == "sqlite":
            return value.replace(tzinfo=None).strftime("%Y-%m-%d %H:%M:%S.%f")
        return value

    def one(self, sql: str, params: dict[str, Any]) -> tuple[Any, ...] | None:
        self._cursor.execute(self._sql(sql), params)
        row = self._cursor.fetchone()
        return None if row is None else tuple(row)

    def all(self, sql: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
        self._cursor.execute(self._sql(sql), params)
        return [tuple(r) for r in self._cursor.fetchall()]

    def run(self, sql: str, params: dict[str, Any]) -> int:
        self._cursor.execute(self._sql(sql), params)
        return int(self._cursor.rowcount or 0)

    def many(self, sql: str, rows: Sequence[dict[str, Any]]) -> None:
        if rows:
            self._cursor.executemany(self._sql(sql), rows)


def in_clause(prefix: str, values: Iterable[str]) -> tuple[str, dict[str, str]]:
    """``(:p0, :p1, ...)`` and its parameters, for an IN list."""
    params = {f"{prefix}{i}": v for i, v in enumerate(values)}
    return "(" + ", ".join(f":{k}" for k in params) + ")", params
