"""Resumable uploads of the S3 driver: the state token and the writer.

An upload ``<id>`` is an S3 multipart upload on ``_blobs/<id>`` (created only
once a first full part exists) plus a *tail*: the bytes not yet in a part,
kept as a small object ``_uploads/<id>/tail-<random>``. S3 refuses parts under
5 MiB unless last, so the tail cannot be uploaded as a part before commit.
Every state names its own tail object, which also proves the upload exists.

A writer's close never deletes the tail of the state it resumed from: until the
new state is on record (the database's row, updated after close), that older
state is the upload, and a failed record must leave it resumable. The new state
names the tail it superseded (``old``); the next writer, which resumes from the
new state and so knows it was recorded, deletes it. Commit and abort delete
every tail under the upload's prefix. Tokens without ``old`` or ``tail_md5``
(older versions) still decode.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from concurrent.futures import Future, wait
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from storage.driver import StorageError, UploadState, UploadStateInvalid
from storage.keys import check_upload_id
from storage.s3_parts import Part, PartPipeline, UploadTooLarge, max_blob_size

if TYPE_CHECKING:
    from storage.s3_base import S3Base


@dataclass(frozen=True, slots=True)
class UploadToken:
    """Decoded ``UploadState.token``; ``tail`` is the tail object's full S3 key.

    ``old``: the tail of the state this one superseded, still kept in case this
    state never got recorded. ``tail_md5``: hex MD5 of the tail's bytes, the
    ETag S3 gives them as the last part, so a commit retried after the tail is
    gone can still tell the object it completed (``multipart_etag``).
    """

    upload_id: str
    mpu: str | None
    parts: tuple[Part, ...]
    tail: str | None
    tail_size: int
    old: str | None = None
    tail_md5: str | None = None

    @property
    def size(self) -> int:
        return sum(p.size for p in self.parts) + self.tail_size

    def multipart_etag(self, tail_etag: str | None = None) -> str | None:
        """The ETag S3 gives the completed object: MD5 of the parts' binary MD5s,
        ``-`` and the part count; None if a part's ETag is not an MD5 (or the
        tail's is unknown). ``tail_etag`` defaults to ``tail_md5``."""
        etags = [p.etag for p in self.parts]
        if self.tail_size:
            etags.append(tail_etag or self.tail_md5 or "")
        digests = [e.strip('"').lower() for e in etags]
        if not digests or not all(_MD5.fullmatch(d) for d in digests):
            return None
        joined = hashlib.md5(b"".join(bytes.fromhex(d) for d in digests), usedforsecurity=False)
        return f"{joined.hexdigest()}-{len(digests)}"

    def content_md5s(self) -> list[tuple[int, str]] | None:
        """Size and hex MD5 of every part and then the tail, in object order; None if
        one is unknown (a part ETag that is not an MD5: SSE-KMS, say)."""
        pieces = [(p.size, p.etag.strip('"').lower()) for p in self.parts]
        if self.tail_size:
            pieces.append((self.tail_size, (self.tail_md5 or "").lower()))
        if not all(_MD5.fullmatch(md5) for _, md5 in pieces):
            return None
        return pieces

    def encode(self) -> str:
        raw: dict[str, Any] = {
            "v": 1,
            "id": self.upload_id,
            "mpu": self.mpu,
            "parts": [[p.number, p.etag, p.size] for p in self.parts],
            "tail": self.tail,
            "tail_size": self.tail_size,
        }
        if self.old is not None:
            raw["old"] = self.old
        if self.tail_md5 is not None:
            raw["tail_md5"] = self.tail_md5
        return json.dumps(raw, separators=(",", ":"))

    def state(self) -> UploadState:
        return UploadState(token=self.encode(), size=self.size)

    @classmethod
    def decode(cls, state: UploadState) -> UploadToken:
        try:
            raw: Any = json.loads(state.token)
            upload_id = check_upload_id(raw["id"])
            mpu = raw["mpu"]
            parts = tuple(Part(int(n), str(e), int(s)) for n, e, s in raw["parts"])
            tail = raw["tail"]
            tail_size = int(raw["tail_size"])
            old = raw.get("old")
            tail_md5 = raw.get("tail_md5")
        except (ValueError, KeyError, TypeError, AttributeError, StorageError) as exc:
            raise UploadStateInvalid("malformed S3 upload state") from exc
        if not all(v is None or isinstance(v, str) for v in (mpu, tail, old, tail_md5)):
            raise UploadStateInvalid("malformed S3 upload state")
        if [p.number for p in parts] != list(range(1, len(parts) + 1)) or (parts and mpu is None):
            raise UploadStateInvalid("malformed S3 upload state: bad part list")
        token = cls(upload_id, mpu, parts, tail, tail_size, old, tail_md5)
        if token.size != state.size or tail_size < 0:
            raise UploadStateInvalid("S3 upload state size disagrees with its parts")
        return token


class S3UploadWriter:
    """Sends every full part at once, up to ``max_concurrency`` parts in flight.

    Memory per writer: the part buffer being filled plus the parts in flight.
    Parts all have the upload's part size: the size of its first part, or the
    configured size for an upload that has none yet.
    """

    def __init__(self, driver: S3Base, token: UploadToken) -> None:
        if token.tail is None:
            raise UploadStateInvalid("upload has no durable tail; it cannot be resumed")
        self._driver = driver
        self._base = token
        self._mpu = token.mpu
        self._part_size = token.parts[0].size if token.parts else driver.config.part_size
        self._next_number = len(token.parts) + 1
        # Bytes the parts still free may hold; parts of old states may differ in size.
        used = sum(p.size for p in token.parts)
        free_parts = driver.config.max_parts - len(token.parts)
        self._room = used + free_parts * self._part_size - token.size
        self._pipeline = PartPipeline(
            driver.executor, self._send_part, driver.config.max_concurrency
        )
        self._buffer: bytearray | None = None
        self._filled = 0
        # The tail object also proves the upload still exists. An empty one (every
        # PATCH of whole parts) is checked in the background, off the request's path,
        # and the check is joined before anything is sent to S3 or returned.
        self._tail_check: Future[bytes] | None = None
        if token.tail_size == 0:
            self._tail_check = driver.executor.submit(driver.read_internal, token.tail, 0)
        else:
            # The tail comes first: the next part is tail + new bytes.
            tail = driver.read_internal(token.tail, token.tail_size)
            self._take_buffer()[: len(tail)] = tail
            self._filled = len(tail)
        self._dirty = False
        self._closed = False

    def _take_buffer(self) -> bytearray:
        if self._buffer is None:
            pool = self._driver.buffers
            # An upload started with another part size than configured has no pool.
            same = pool.size == self._part_size
            self._buffer = pool.take() if same else bytearray(self._part_size)
        return self._buffer

    def write(self, data: bytes) -> None:
        if self._closed:
            raise ValueError("write to a closed upload writer")
        if not data:
            return
        if len(data) > self._room:
            limit = self._driver.config.max_parts
            raise UploadTooLarge(
                f"upload exceeds the S3 limit of {limit} parts of {self._part_size} bytes "
                f"(at most {max_blob_size(self._part_size, limit)} bytes per blob); "
                "a larger s3_part_size allows larger blobs"
            )
        self._room -= len(data)
        self._dirty = True
        view = memoryview(data).cast("B")
        while view:
            buffer = self._take_buffer()
            take = min(self._part_size - self._filled, len(view))
            buffer[self._filled : self._filled + take] = view[:take]
            self._filled += take
            view = view[take:]
            if self._filled == self._part_size:
                self._submit_part()

    def _check_exists(self) -> None:
        """Join the background tail check; raises UploadStateInvalid if the upload is gone."""
        check, self._tail_check = self._tail_check, None
        if check is not None:
            check.result()

    def _submit_part(self) -> None:
        self._check_exists()
        if self._mpu is None:
            self._mpu = self._driver.create_multipart(self._base.upload_id)
        assert self._buffer is not None
        body, self._buffer, self._filled = self._buffer, None, 0
        self._pipeline.submit(self._next_number, body)
        self._next_number += 1

    def _send_part(self, number: int, body: bytearray) -> str:
        assert self._mpu is not None
        try:
            return self._driver.upload_part(self._base.upload_id, self._mpu, number, body)
        finally:
            # botocore is done with the bytes once the call returns, retries included.
            self._driver.buffers.give(body)

    def _drop_buffer(self, *, keep_bytes: bool = False) -> bytes:
        """Give the part buffer back to the pool; with ``keep_bytes``, copy what it held."""
        buffer, filled = self._buffer, self._filled
        self._buffer, self._filled = None, 0
        if buffer is None:
            return b""
        pending = bytes(memoryview(buffer)[:filled]) if keep_bytes else b""
        self._driver.buffers.give(buffer)
        return pending

    def close(self, final: bool = False) -> UploadState:
        if self._closed:
            raise ValueError("upload writer already closed")
        self._closed = True
        if not self._dirty:
            self._drop_buffer()
            self._check_exists()
            return self._base.state()
        base = self._base
        try:
            self._check_exists()
            # Every part must be in S3 before the state that names it is returned.
            parts = base.parts + tuple(self._pipeline.drain())
            tail_bytes = self._drop_buffer(keep_bytes=True)
            if not tail_bytes and base.tail_size == 0:
                # Tails never change once written: an empty one can serve again,
                # which saves a PUT and a DELETE per PATCH of whole parts.
                tail, old = base.tail, base.old
            else:
                tail, old = self._driver.put_tail(base.upload_id, tail_bytes), base.tail
        except BaseException:
            self._pipeline.cancel()
            raise
        md5 = hashlib.md5(tail_bytes, usedforsecurity=False).hexdigest() if tail_bytes else None
        token = UploadToken(base.upload_id, self._mpu, parts, tail, len(tail_bytes), old, md5)
        # The base state was resumed, so it is on record: the tail it superseded is
        # no longer needed (kept if deleting fails; commit tidies up). The base's
        # own tail stays until a state naming this one is. A final close skips
        # the DELETE: the commit that follows removes every tail.
        if base.old is not None and old != base.old and not final:
            self._driver.delete_internal_quietly(base.old)
        return token.state()

    def abandon(self) -> None:
        # Parts already sent stay unrecorded (Complete will not use them). Every part
        # handed over is let finish, so none lands after a later writer resent its number.
        self._closed = True
        self._drop_buffer()
        self._pipeline.cancel(drop_queued=False)
        if self._tail_check is not None:
            wait([self._tail_check])  # its outcome no longer matters
            self._tail_check = None


_MD5 = re.compile(r"[0-9a-f]{32}")


def new_tail_name(upload_prefix: str) -> str:
    return f"{upload_prefix}tail-{uuid.uuid4().hex}"
