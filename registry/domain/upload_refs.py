"""Upload references that need no database row until bytes arrive.

``POST /blobs/uploads/`` answers with a reference made of a random id, the
time it was issued and a check value over both, the repository and the
subject. Until a PATCH stores bytes under it the session exists only in that
reference, so starting an upload writes nothing, and a single-request upload
(POST, then PUT with the whole blob) commits once, with its blob.

The check value is not a secret: a reference grants nothing, as every request
is authorized on its own. It tells issued references from made-up ones (which
get BLOB_UPLOAD_UNKNOWN) and binds a reference to its repository and subject.
References are lowercase hex of one fixed length, so they are valid upload ids
and storage key components, and never equal to a 32-character row id of the
sessions POST recorded before them.
"""

from __future__ import annotations

import hashlib
import secrets

REFERENCE_LENGTH = 64
_ID_HEX = 32
_TIME_HEX = 8
_CHECK_HEX = REFERENCE_LENGTH - _ID_HEX - _TIME_HEX
# A reference may not claim to be issued later than this: its session would
# outlive the purge of abandoned uploads.
MAX_CLOCK_AHEAD = 300


def _check(repository: str, subject: str | None, body: str) -> str:
    text = f"lading upload\n{repository}\n{subject or ''}\n{body}"
    return hashlib.sha256(text.encode()).hexdigest()[:_CHECK_HEX]


def issue_reference(repository: str, subject: str | None, now: float) -> str:
    body = f"{secrets.token_hex(_ID_HEX // 2)}{int(now):0{_TIME_HEX}x}"
    return body + _check(repository, subject, body)


def is_issued_reference(reference: str) -> bool:
    """Whether ``reference`` has the form of an issued one (its check is not verified)."""
    return len(reference) == REFERENCE_LENGTH and all(c in "0123456789abcdef" for c in reference)


def issued_at(reference: str) -> int:
    """When an issued-form ``reference`` says it was issued (epoch seconds, unverified)."""
    return int(reference[_ID_HEX : _ID_HEX + _TIME_HEX], 16)


def verified_issue_time(
    reference: str, repository: str, subject: str | None, now: float
) -> int | None:
    """Epoch seconds ``reference`` was issued at for ``repository`` and ``subject``;
    None when it is not such a reference (another form, a wrong check, or from the
    future)."""
    if not is_issued_reference(reference):
        return None
    body, check = reference[: _ID_HEX + _TIME_HEX], reference[_ID_HEX + _TIME_HEX :]
    if not secrets.compare_digest(check, _check(repository, subject, body)):
        return None
    issued = issued_at(reference)
    return None if issued > now + MAX_CLOCK_AHEAD else issued


def end_mark_expiry(reference: str, lifetime: float) -> int:
    """Until when an ended issued-form ``reference`` must stay marked ended: past its
    lifetime on any replica's clock, even one running ``MAX_CLOCK_AHEAD`` behind."""
    return issued_at(reference) + int(lifetime) + MAX_CLOCK_AHEAD + 1
