"""Tag lists and the repository catalog, paginated in lexical order."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import SQLColumnExpression, exists, select

from registry.db.engine import Database
from registry.db.models import Manifest, Repository, Tag
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
        with self.db.read() as session:
            repo_id = session.scalar(select(Repository.id).where(Repository.name == repository))
            if repo_id is None:
                raise RegistryError(NAME_UNKNOWN, detail={"name": repository})
            if limit == 0:
                return Listing([], None)
            name = self._bytewise(Tag.name)
            query = select(Tag.name).where(Tag.repository_id == repo_id)
            if page.last is not None:
                query = query.where(name > page.last)
            rows = list(session.scalars(query.order_by(name).limit(limit + 1)))
        return _page(rows, limit)

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
