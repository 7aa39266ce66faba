"""Resumable uploads of the S3 driver: the state token and the writer.

An upload ``<id>`` is an S3 multipart upload on ``_blobs/<id>`` (created only
once a first full part exists) plus a *tail*: the bytes not yet in a part,
kept as a small object ``_uploads/<id>/tail-<random>``. S3 refuses parts under
5 MiB unless last, so the tail cannot be uploaded as a part before commit.
Every state names its own tail object, which also proves the upload exists.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from storage.driver import StorageError, UploadState, UploadStateInvalid
from storage.keys import check_upload_id

if TYPE_CHECKING:
    from storage.s3 import S3Driver

MIN_PART_SIZE = 5 * 1024 * 1024
MAX_PARTS = 10_000
# Parts grow every 1000 parts so an upload can pass 10,000 x part_size.
_GROWTH_STEP = 1000


def part_target(part_size: int, number: int) -> int:
    """Size of part ``number`` (1-based) for a configured ``part_size``."""
    return part_size * (1 + (number - 1) // _GROWTH_STEP)


@dataclass(frozen=True, slots=True)
class Part:
    number: int
    etag: str
    size: int


@dataclass(frozen=True, slots=True)
class UploadToken:
    """Decoded ``UploadState.token``; ``tail`` is the tail object's full S3 key."""

    upload_id: str
    mpu: str | None
    parts: tuple[Part, ...]
    tail: str | None
    tail_size: int

    @property
    def size(self) -> int:
        return sum(p.size for p in self.parts) + self.tail_size

    def encode(self) -> str:
        return json.dumps(
            {
                "v": 1,
                "id": self.upload_id,
                "mpu": self.mpu,
                "parts": [[p.number, p.etag, p.size] for p in self.parts],
                "tail": self.tail,
                "tail_size": self.tail_size,
            },
            separators=(",", ":"),
        )

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
        except (ValueError, KeyError, TypeError, StorageError) as exc:
            raise UploadStateInvalid("malformed S3 upload state") from exc
        if not (mpu is None or isinstance(mpu, str)) or not (tail is None or isinstance(tail, str)):
            raise UploadStateInvalid("malformed S3 upload state")
        if [p.number for p in parts] != list(range(1, len(parts) + 1)) or (parts and mpu is None):
            raise UploadStateInvalid("malformed S3 upload state: bad part list")
        token = cls(upload_id, mpu, parts, tail, tail_size)
        if token.size != state.size or tail_size < 0:
            raise UploadStateInvalid("S3 upload state size disagrees with its parts")
        return token


class S3UploadWriter:
    """Buffers at most about one part in memory; full parts go to S3 at once."""

    def __init__(self, driver: S3Driver, token: UploadToken) -> None:
        if token.tail is None:
            raise UploadStateInvalid("upload has no durable tail; it cannot be resumed")
        self._driver = driver
        self._base = token
        self._mpu = token.mpu
        self._parts = list(token.parts)
        # The tail comes first: the next part is tail + new bytes.
        self._buf = bytearray(driver.read_internal(token.tail, token.tail_size))
        self._dirty = False
        self._closed = False

    def _next_target(self) -> int:
        return part_target(self._driver.config.part_size, len(self._parts) + 1)

    def write(self, data: bytes) -> None:
        if self._closed:
            raise ValueError("write to a closed upload writer")
        if not data:
            return
        self._dirty = True
        self._buf += data
        while len(self._buf) >= (target := self._next_target()):
            self._flush_part(target)

    def _flush_part(self, target: int) -> None:
        number = len(self._parts) + 1
        if number > MAX_PARTS:
            raise StorageError("upload exceeds the S3 limit of 10,000 parts")
        if self._mpu is None:
            self._mpu = self._driver.create_multipart(self._base.upload_id)
        # One copy, not two; the view must be released before the buffer shrinks.
        with memoryview(self._buf) as view, view[:target] as head:
            body = bytes(head)
        etag = self._driver.upload_part(self._base.upload_id, self._mpu, number, body)
        self._parts.append(Part(number, etag, target))
        del self._buf[:target]

    def close(self, final: bool = False) -> UploadState:
        if self._closed:
            raise ValueError("upload writer already closed")
        self._closed = True
        if not self._dirty:
            return self._base.state()
        tail = self._driver.put_tail(self._base.upload_id, bytes(self._buf))
        token = UploadToken(
            self._base.upload_id, self._mpu, tuple(self._parts), tail, len(self._buf)
        )
        self._buf = bytearray()
        # The old tail is superseded; keep it if deleting fails (commit tidies up).
        if self._base.tail is not None and self._base.tail != tail:
            self._driver.delete_internal_quietly(self._base.tail)
        return token.state()

    def abandon(self) -> None:
        # Parts already uploaded stay unrecorded; Complete will not use them.
        self._closed = True
        self._buf = bytearray()


def new_tail_name(upload_prefix: str) -> str:
    return f"{upload_prefix}tail-{uuid.uuid4().hex}"
