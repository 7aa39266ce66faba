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

# What ``{now}`` and ``{expires}`` (now plus ``:lease_seconds``) stand for in a ClockedSql.
# PostgreSQL reads its own clock inside the statement: replicas on hosts whose clocks
# disagree still agree on whose lease ran out. A SQLite file is only opened by processes
# on its own host, whose clock is the database's: it is bound as a parameter, which
# costs nothing more than before.
_CLOCKS = {
    "postgresql": {
        "now": "clock_timestamp()",
        "expires": "(clock_timestamp() + make_interval(secs => :lease_seconds))",
    },
    "sqlite": {"now": ":now", "expires": ":expires"},
}


# The database's clock in seconds since the epoch, by dialect: GC review events and the
# pushes that queue them must read the same clock as the collector that compares them.
EPOCH_NOW = {
    "sqlite": "((julianday('now') - 2440587.5) * 86400.0)",
    "postgresql": "extract(epoch from clock_timestamp())::double precision",
}


def to_pyformat(sql: str) -> str:
    return _NAMED_PARAM.sub(r"%(\1)s", sql)


class ClockedSql:
    """A statement whose ``{now}`` and ``{expires}`` are times on the database's clock."""

    def __init__(self, template: str) -> None:
        self.by_dialect = {name: template.format_map(clock) for name, clock in _CLOCKS.items()}
        self.uses_expiry = "{expires}" in template


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

    def run_clocked(
        self, sql: ClockedSql, params: dict[str, Any], lease_seconds: float = 0.0
    ) -> int:
        """Run ``sql`` with its ``{now}`` (and ``{expires}``, ``lease_seconds`` later)."""
        if self.is_postgres:
            clock: dict[str, Any] = {"lease_seconds": lease_seconds} if sql.uses_expiry else {}
        else:
            now = dt.datetime.now(dt.UTC)
            clock = {"now": self.timestamp(now)}
            if sql.uses_expiry:
                clock["expires"] = self.timestamp(now + dt.timedelta(seconds=lease_seconds))
        return self.run(sql.by_dialect[self.dialect], {**params, **clock})

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
