"""The one storage contract the registry uses.

A driver stores opaque bytes under keys. It knows nothing about digests,
repositories or manifests: the metadata database decides what exists, the
driver only keeps bytes durable. Every driver must pass the shared
conformance suite in ``tests/storage/``.

Keys are relative, ``/``-separated paths whose components match
``[A-Za-z0-9._-]+`` and are neither ``.`` nor ``..``; anything else raises
:class:`InvalidKey` before the backend is touched.

Every method is synchronous and may block: callers run them in worker
threads. Backend-specific exceptions never escape a driver; they are
translated into the errors below.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol, runtime_checkable


class StorageError(Exception):
    """Base of every error a driver raises."""


class ObjectNotFound(StorageError):
    """The key (or upload) does not exist."""


class InvalidKey(StorageError):
    """The key breaks the key grammar; nothing was touched."""


class StorageUnavailable(StorageError):
    """The backend failed or timed out; the operation may be retried."""


class StorageFull(StorageError):
    """The backend has no space left (ENOSPC, a quota); nothing of the failed call is kept.

    Retrying helps only once an operator frees space.
    """


class UploadStateInvalid(StorageError):
    """An upload state does not describe a live upload of this driver."""


class ObjectTooLarge(StorageError):
    """An upload would grow past the largest object this backend can store.

    A limit, not an outage: retrying cannot help. The message says what the
    limit is and which setting raises it.
    """


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    key: str
    size: int


class UploadWriter(Protocol):
    """Appends bytes to one resumable upload within one request."""

    def write(self, data: bytes) -> None:
        """Append ``data``. Not durable until :meth:`close` returns.

        Raises :class:`ObjectTooLarge`, before storing any byte of ``data``, when
        the upload would exceed the backend's largest object, and
        :class:`StorageFull` when the backend has no space left; in both cases
        the last durable state stays valid.
        """

    def close(self, final: bool = False) -> UploadState:
        """Make every written byte durable and return the new state.

        Only bytes covered by a state returned here may be relied upon; a
        writer abandoned without ``close`` leaves the previous state valid, and
        so does a close whose new state is never resumed or committed (the
        caller failed to record it), until a writer resumes from a later state.
        ``final=True`` tells the driver that ``commit_upload`` follows at once,
        so work that only protects a later resumption may be skipped.
        Raises :class:`StorageFull` when there is no space left (the previous
        state stays valid).
        """

    def abandon(self) -> None:
        """Drop what was written since the last durable state, if possible."""


@dataclass(frozen=True, slots=True)
class UploadState:
    """What the database records about an upload between requests.

    ``token`` is opaque, driver-owned and JSON-safe text; ``size`` is the
    number of durable bytes.
    """

    token: str
    size: int


@runtime_checkable
class Driver(Protocol):
    """The storage contract. See each method for its semantics."""

    name: str

    def check(self) -> None:
        """Verify the backend is reachable and usable.

        Raises :class:`StorageUnavailable` with a human-readable message, or
        :class:`StorageFull` when the backend works but has no space left
        (reads still do).
        """

    def stat(self, key: str) -> ObjectInfo:
        """Return the size of a stored object; :class:`ObjectNotFound` if absent."""

    def read(self, key: str, offset: int = 0, length: int | None = None) -> Iterator[bytes]:
        """Stream ``length`` bytes (or to the end) starting at ``offset``.

        Raises :class:`ObjectNotFound` before yielding anything if the key is
        absent. Chunks are large (1-4 MiB) to keep per-chunk cost low, and
        never above 4 MiB, to bound memory per reader.
        An offset past the end yields nothing.
        """

    def get(self, key: str) -> bytes:
        """Return a whole (small) object; :class:`ObjectNotFound` if absent."""

    def put(self, key: str, data: bytes) -> None:
        """Store ``data`` atomically and durably, replacing any old object.

        Readers see either the old object or the whole new one, never a
        part. Raises :class:`StorageFull` when there is no space left, keeping
        the old object and leaving no partial file behind.
        """

    def delete(self, key: str) -> None:
        """Remove an object; :class:`ObjectNotFound` if absent."""

    def list(self, prefix: str) -> Iterator[str]:
        """Yield every key under the directory-like ``prefix`` (recursive).

        ``""`` lists everything. Order is unspecified. In-progress uploads are
        not listed. A part that cannot be read raises :class:`StorageUnavailable`
        instead of being left out: fsck would take its objects for missing.
        """

    def start_upload(self, upload_id: str) -> UploadState:
        """Begin a new, empty resumable upload identified by ``upload_id``.

        ``upload_id`` follows the key grammar of one component. Raises
        :class:`StorageFull` when there is no space left.
        """

    def resume_upload(self, state: UploadState) -> UploadWriter:
        """Open a writer that appends after ``state.size`` durable bytes.

        Bytes beyond ``state.size`` left by an earlier abandoned writer are
        discarded. Raises :class:`UploadStateInvalid` if the upload is gone,
        including when an upload started later under the same id holds fewer
        bytes (never padded up to ``state.size``); a driver may find that out
        only at the writer's first ``write`` that stores bytes, or at ``close``,
        which then raise it (nothing is stored). A backend failure (too many open
        files, an I/O error) is :class:`StorageUnavailable`: the upload is kept.
        """

    def read_upload(self, state: UploadState) -> Iterator[bytes]:
        """Stream the ``state.size`` durable bytes of an upload; :class:`UploadStateInvalid`
        if they are not all there (as for ``resume_upload``)."""

    def commit_upload(self, state: UploadState, key: str) -> str:
        """Make an upload's bytes a readable, durable object and end the upload.

        The driver stores the object under ``key`` when it can do so without
        copying data again (a rename); otherwise it may keep it under a key
        of its own choosing. Returns the key the object now lives under.
        If ``key`` already exists the result still holds the uploaded bytes.
        Raises :class:`StorageFull` when there is no space left; the upload
        then stays as it was. A commit of the same state to the same key retried
        after a failure succeeds, even if the failed one took effect (its answer
        lost); a commit of a state whose bytes differ (another last chunk of the
        same length) must then not pass the earlier object for its own. A state
        whose bytes are not all there raises :class:`UploadStateInvalid`.
        """

    def abort_upload(self, state: UploadState) -> None:
        """Discard an upload and its bytes. Aborting a missing upload is a no-op."""

    def list_uploads(self) -> Iterator[tuple[str, UploadState]]:
        """Yield ``(upload_id, state)`` for uploads the backend still holds.

        Used to find orphans after crashes; the state's size is best effort.
        """

    def redirect_url(self, key: str, expires_in: int) -> str | None:
        """Return a short-lived URL clients may fetch the object from, or None."""
