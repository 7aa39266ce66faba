"""Tag lists and the repository catalog, paginated in lexical order."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import SQLColumnExpression, exists, select

from registry.db.engine import Database
from registry.db.models import Manifest, Repository
from registry.domain.errors import NAME_UNKNOWN, RegistryError
from registry.domain.pagination import Page


@dataclass(frozen=True, slots=True)
class Listing:
    items: list[str]
    # The last item when more follow (the ``last`` of the next page), else None.
    next_last: str | None


def _page(rows: list[str], limit: int) -> Listing:
    if len(rows) > limit:
        return Listing(rows[:limit], rows[limit - 1])
    return Listing(rows, None)


_REPO_ID = "SELECT id FROM repositories WHERE name = :name"
# {after} and {collate} are fixed SQL fragments chosen in code, never input.
_TAGS = (
    "SELECT name FROM tags WHERE repository_id = :repo{after} ORDER BY name{collate} LIMIT :limit"
)


class ListingService:
    def __init__(self, db: Database, default_page: int) -> None:
        self.db = db
        self.default_page = default_page

    def _bytewise(self, column: SQLColumnExpression[str]) -> SQLColumnExpression[str]:
        """Order and compare byte-wise: PostgreSQL databases often default to a
        locale collation (``a`` < ``B`` < ``b``); SQLite is byte-wise already."""
        return column.collate("C") if self.db.dialect == "postgresql" else column

    def tags(self, repository: str, page: Page) -> Listing:
        limit = self.default_page if page.limit is None else page.limit
        repo = self.db.fetch_one(_REPO_ID, {"name": repository})
        if repo is None:
            raise RegistryError(NAME_UNKNOWN, detail={"name": repository})
        if limit == 0:
            return Listing([], None)
        # Plain SQL: an ORM session costs milliseconds on a 5,000-tag list.
        collate = ' COLLATE "C"' if self.db.dialect == "postgresql" else ""
        params: dict[str, object] = {"repo": repo[0], "limit": limit + 1}
        after = ""
        if page.last is not None:
            after = f" AND name{collate} > :last"
            params["last"] = page.last
        rows = self.db.fetch_all(_TAGS.format(after=after, collate=collate), params)
        return _page([r[0] for r in rows], limit)

    def repositories(self, page: Page, visible: str | None = None) -> Listing:
        """Repositories holding at least one manifest, in lexical order."""
        limit = self.default_page if page.limit is None else page.limit
        if limit == 0:
            return Listing([], None)
        query = select(Repository.name).where(
            exists().where(Manifest.repository_id == Repository.id)
        )
        name = self._bytewise(Repository.name)
        if page.last is not None:
            query = query.where(name > page.last)
        with self.db.read() as session:
            rows = list(session.scalars(query.order_by(name).limit(limit + 1)))
        return _page(rows, limit)
