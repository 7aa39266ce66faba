"""The audit log: every administrative change is recorded with who, what and when."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from registry.db.engine import Database
from registry.db.models import AuditEntry, utcnow


@dataclass(frozen=True, slots=True)
class AuditRecord:
    id: int
    at: dt.datetime
    actor: str
    action: str
    target: str
    details: dict[str, Any] | None


def _record(row: AuditEntry) -> AuditRecord:
    return AuditRecord(
        id=row.id,
        at=row.at,
        actor=row.actor,
        action=row.action,
        target=row.target,
        details=json.loads(row.details) if row.details else None,
    )


class AuditService:
    def __init__(self, db: Database) -> None:
        self.db = db

    def record(
        self, actor: str, action: str, target: str, details: dict[str, Any] | None = None
    ) -> None:
        with self.db.write() as session:
            self.add(session, actor, action, target, details)

    @staticmethod
    def add(
        session: Session,
        actor: str,
        action: str,
        target: str,
        details: dict[str, Any] | None = None,
    ) -> None:
        """Record inside the caller's transaction, so the entry commits with the change."""
        session.add(
            AuditEntry(
                at=utcnow(),
                actor=actor[:255],
                action=action,
                target=target[:1024],
                details=json.dumps(details, sort_keys=True) if details is not None else None,
            )
        )

    def entries(
        self, limit: int, before_id: int | None = None, action: str | None = None
    ) -> tuple[list[AuditRecord], int | None]:
        """Newest first; the second value is the cursor of the next page, if any."""
        query = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit + 1)
        if before_id is not None:
            query = query.where(AuditEntry.id < before_id)
        if action is not None:
            query = query.where(AuditEntry.action == action)
        with self.db.read() as session:
            rows = [_record(r) for r in session.scalars(query)]
        if len(rows) > limit:
            return rows[:limit], rows[limit - 1].id
        return rows, None
