"""S3 driver: objects in a bucket of any S3-compatible endpoint, via boto3.

Layout below the configured prefix: user keys as given; ``_uploads/<id>/``
holds upload tails (never listed); ``_blobs/<id>`` is where large uploads
are completed, so commit needs no extra copy (see ``storage.s3_uploads``).
Client, configuration and error translation live in ``storage.s3_base``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import re
import uuid
from collections.abc import Generator, Iterator

from botocore.exceptions import ClientError
from botocore.response import StreamingBody

from storage.driver import (
    InvalidKey,
    ObjectInfo,
    ObjectNotFound,
    StorageError,
    StorageUnavailable,
    UploadState,
    UploadStateInvalid,
)
from storage.keys import check_key, check_prefix, check_upload_id
from storage.s3_base import BLOBS, NOT_FOUND, UPLOADS, S3Base, S3Config, error_code
from storage.s3_parts import RangeReader
from storage.s3_uploads import S3UploadWriter, UploadToken

__all__ = ["S3Config", "S3Driver", "UploadNotReadable"]

# Ranged GETs of the part size are read in pieces of READ_CHUNK (the contract's largest)
# and yielded as read: reading a range whole and cutting it into 1 MiB chunks copied
# every byte once more (1 GiB pulls from rclone: 1.22-1.30 against 0.94-0.97 CPU s/GiB,
# peak RSS 210 against 197-201 MiB; docs/s3.md).
READ_CHUNK = 4 * 1024 * 1024
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+)")
# An object completed from parts, as AWS-like servers name it: <md5 of MD5s>-<parts>.
_MULTIPART_ETAG = re.compile(r"[0-9a-f]{32}-(\d+)")


class UploadNotReadable(StorageError):
    """S3 cannot read back parts of a multipart upload before it is completed."""


class S3Driver(S3Base):
    """Stores objects in ``config.bucket`` under ``config.prefix``."""

    name = "s3"

    # -- contract ----------------------------------------------------------
    def check(self) -> None:
        client = self._check_client
        with self._errors("check"):
            try:
                client.head_bucket(Bucket=self.config.bucket)
            except ClientError as exc:
                if error_code(exc) in ("404", "NoSuchBucket", "NotFound"):
                    raise StorageUnavailable(f"S3 {self._where} does not exist") from exc
                raise
            # Prove we may write; a flat key under _uploads/ is never listed.
            probe = f"{self._root}{UPLOADS}/.probe-{uuid.uuid4().hex}"
            client.put_object(Bucket=self.config.bucket, Key=probe, Body=b"")
            client.delete_object(Bucket=self.config.bucket, Key=probe)

    def stat(self, key: str) -> ObjectInfo:
        full = self._key(key)
        with self._errors(key):
            head = self._client.head_object(Bucket=self.config.bucket, Key=full)
        return ObjectInfo(key=key, size=head["ContentLength"])

    def read(self, key: str, offset: int = 0, length: int | None = None) -> Iterator[bytes]:
        full = self._key(key)
        if offset < 0 or (length is not None and length < 0):
            raise ValueError("offset and length must not be negative")
        if length == 0:
            self.stat(key)
            return iter(())
        return self._read_full(full, key, offset, length)

    def _read_full(self, full: str, what: str, offset: int, length: int | None) -> Iterator[bytes]:
        """Stream a range; beyond the first ``part_size`` bytes, ranged GETs run ahead.

        The first GET asks for one range and learns the object size from its
        ``Content-Range``; the rest follows in ``max_concurrency`` parallel
        ranged GETs, yielded in order (boto3's downloads work the same way).
        """
        size = self.config.part_size
        first_end = offset + size if length is None else offset + min(size, length)
        with self._errors(what):
            try:
                response = self._client.get_object(
                    Bucket=self.config.bucket, Key=full, Range=f"bytes={offset}-{first_end - 1}"
                )
            except ClientError as exc:
                # The object exists but ends before offset (or is empty).
                if error_code(exc) == "InvalidRange":
                    return iter(())
                raise
        body = response["Body"]
        found = _CONTENT_RANGE.fullmatch(response.get("ContentRange", "").strip())
        if found is None:
            # The server ignored Range and sent the whole object.
            return self._stream(body, what, skip=offset, limit=length)
        total = int(found.group(3))
        end = total if length is None else min(total, offset + length)
        if end <= first_end:
            return self._stream(body, what)
        reader = RangeReader(
            self.executor,
            lambda first, last: self._get_range(full, what, first, last),
            first_end,
            end,
            size,
            self.config.max_concurrency,
            READ_CHUNK,
        )
        reader.prefetch()
        return self._chain(self._stream(body, what), reader)

    @staticmethod
    def _chain(first: Iterator[bytes], rest: RangeReader) -> Iterator[bytes]:
        try:
            yield from first
            yield from rest
        finally:
            # Drop read-ahead not yet started when the reader is closed early.
            rest.close()

    def _get_range(self, full: str, what: str, first: int, last: int) -> list[bytes]:
        with self._errors(what):
            response = self._client.get_object(
                Bucket=self.config.bucket, Key=full, Range=f"bytes={first}-{last}"
            )
        return list(self._stream(response["Body"], what))

    def _stream(
        self, body: StreamingBody, what: str, skip: int = 0, limit: int | None = None
    ) -> Iterator[bytes]:
        try:
            with self._errors(what):
                while skip > 0 and (dropped := body.read(min(skip, READ_CHUNK))):
                    skip -= len(dropped)
                while limit is None or limit > 0:
                    chunk = body.read(READ_CHUNK if limit is None else min(limit, READ_CHUNK))
                    if not chunk:
                        break
                    if limit is not None:
                        limit -= len(chunk)
                    yield chunk
        finally:
            body.close()

    def get(self, key: str) -> bytes:
        return b"".join(self._read_full(self._key(key), key, 0, None))

    def put(self, key: str, data: bytes) -> None:
        full = self._write_key(key)
        with self._errors(key):
            self._client.put_object(Bucket=self.config.bucket, Key=full, Body=data)

    def delete(self, key: str) -> None:
        full = self._key(key)
        with self._errors(key):
            # S3 deletes of missing keys succeed silently; the contract wants an error.
            self._client.head_object(Bucket=self.config.bucket, Key=full)
            self._client.delete_object(Bucket=self.config.bucket, Key=full)

    def list(self, prefix: str) -> Iterator[str]:
        prefix = check_prefix(prefix)
        if prefix.split("/", 1)[0] == UPLOADS:
            return
        search = f"{self._root}{prefix}/" if prefix else self._root
        for full, _size in self._list_objects(search):
            key = full[len(self._root) :]
            if key.startswith(f"{UPLOADS}/"):
                continue
            try:
                yield check_key(key)
            except InvalidKey:
                continue  # A foreign object the driver could not address anyway.

    # -- uploads -----------------------------------------------------------
    def start_upload(self, upload_id: str) -> UploadState:
        check_upload_id(upload_id)
        with self._errors(f"upload {upload_id}"):
            found = self._client.list_objects_v2(
                Bucket=self.config.bucket, Prefix=self._upload_prefix(upload_id), MaxKeys=1
            )
        if found.get("KeyCount", 0):
            raise UploadStateInvalid(f"upload {upload_id!r} already exists")
        tail = self.put_tail(upload_id, b"")
        return UploadToken(upload_id, None, (), tail, 0).state()

    def resume_upload(self, state: UploadState) -> S3UploadWriter:
        return S3UploadWriter(self, UploadToken.decode(state))

    def read_upload(self, state: UploadState) -> Iterator[bytes]:
        token = UploadToken.decode(state)
        if token.parts:
            raise UploadNotReadable(
                "S3 cannot read parts of an unfinished multipart upload; "
                "keep the running hash state instead of re-reading"
            )
        if token.tail is None:
            raise UploadStateInvalid("upload has no durable tail")
        if token.tail_size == 0:
            self.read_internal(token.tail, 0)
            return iter(())
        return self._read_internal_stream(token.tail, token.tail_size)

    def _read_internal_stream(self, full: str, size: int) -> Iterator[bytes]:
        try:
            return self._read_full(full, "upload", 0, size)
        except ObjectNotFound as exc:
            raise UploadStateInvalid("upload is gone") from exc

    def commit_upload(self, state: UploadState, key: str) -> str:
        target = self._write_key(key)
        token = UploadToken.decode(state)
        if token.tail is None:
            raise UploadStateInvalid("upload has no durable tail")
        if token.mpu is None:
            # Small upload: the tail is the whole object; a server-side copy is cheap.
            try:
                with self._errors(f"commit {key}"):
                    try:
                        self._client.copy_object(
                            Bucket=self.config.bucket,
                            Key=target,
                            CopySource={"Bucket": self.config.bucket, "Key": token.tail},
                        )
                    except ClientError as exc:
                        if error_code(exc) in NOT_FOUND:
                            raise UploadStateInvalid("upload is gone") from exc
                        raise
            except (UploadStateInvalid, StorageUnavailable):
                # A retried commit (the registry keeps a session whose commit failed)
                # may follow one that copied and cleaned up but lost its answer: the
                # object is then under this upload's own key.
                if not self._holds(key, token.size):
                    raise
            self._cleanup_after_commit(token.upload_id)
            return key
        self._complete(token)
        self._cleanup_after_commit(token.upload_id, keep_mpu=token.mpu)
        return f"{BLOBS}/{token.upload_id}"

    def _holds(self, key: str, size: int, token: UploadToken | None = None) -> bool:
        """Whether ``key`` is there with ``size`` bytes (False if S3 cannot tell) and,
        for a completed multipart ``token``, exactly the bytes it names.

        Servers that give multipart objects an ETag of their parts' MD5s (AWS,
        MinIO, moto) must give the one ``token``'s parts make. Otherwise (rclone: the
        MD5 of the whole object, which no state records) the object is read and each
        part's MD5 compared: an earlier attempt of the same size, completed with another
        final chunk, must not pass for this one (a blob not matching its digest).
        """
        full = self._key(key)
        try:
            with self._errors(key):
                head = self._client.head_object(Bucket=self.config.bucket, Key=full)
        except StorageError:
            return False
        if head["ContentLength"] != size:
            return False
        if token is None:
            return True
        found = _MULTIPART_ETAG.fullmatch(str(head.get("ETag", "")).strip('"').lower())
        expected = token.multipart_etag()
        if found is not None and expected is not None:
            return found.group(0) == expected
        return self._bytes_match(full, key, token)

    def _bytes_match(self, full: str, what: str, token: UploadToken) -> bool:
        """Whether the object's bytes have the MD5s of ``token``'s parts and tail.

        Reads the whole object, which only a commit whose answer was lost does;
        False when an MD5 is unknown or S3 fails (the commit is then refused).
        """
        pieces = token.content_md5s()
        if pieces is None:
            return False
        try:
            reader = self._read_full(full, what, 0, token.size)
        except StorageError:
            return False
        pending = memoryview(b"")
        try:
            for size, md5 in pieces:
                hasher = hashlib.md5(usedforsecurity=False)
                while size:
                    if not pending:
                        pending = memoryview(next(reader, b""))
                        if not pending:
                            return False  # shorter than its HEAD said
                    taken = pending[:size]
                    hasher.update(taken)
                    size -= len(taken)
                    pending = pending[len(taken) :]
                if hasher.hexdigest() != md5:
                    return False
        except StorageError:
            return False
        finally:
            if isinstance(reader, Generator):
                reader.close()  # stops the read-ahead of a mismatch found early
        return True

    def _cleanup_after_commit(self, upload_id: str, keep_mpu: str | None = None) -> None:
        # The object is committed: leftovers of a failed cleanup are orphans, which
        # GC's upload sweep removes; failing here would fail a commit that happened.
        with contextlib.suppress(StorageUnavailable):
            self._cleanup(upload_id, keep_mpu)

    def _complete(self, token: UploadToken) -> None:
        assert token.mpu is not None and token.tail is not None
        blob = self._blob_key(token.upload_id)
        parts = [{"PartNumber": p.number, "ETag": p.etag} for p in token.parts]
        expected = token
        try:
            if token.tail_size:
                tail = self.read_internal(token.tail, token.tail_size)
                if token.tail_md5 is None:
                    # A state of an older version: the check below needs the tail's MD5.
                    md5 = hashlib.md5(tail, usedforsecurity=False).hexdigest()
                    expected = dataclasses.replace(token, tail_md5=md5)
                number = len(parts) + 1
                etag = self.upload_part(token.upload_id, token.mpu, number, tail)
                parts.append({"PartNumber": number, "ETag": etag})
                # What S3 calls the tail part; the ETag check below uses it.
                expected = dataclasses.replace(token, tail_md5=etag.strip('"'))
            with self._errors(f"complete upload {token.upload_id}"):
                try:
                    self._complete_client.complete_multipart_upload(
                        Bucket=self.config.bucket,
                        Key=blob,
                        UploadId=token.mpu,
                        MultipartUpload={"Parts": parts},  # type: ignore[typeddict-item]
                    )
                except ClientError as exc:
                    if error_code(exc) in ("InvalidPart", "EntityTooSmall"):
                        raise UploadStateInvalid(
                            f"upload parts do not match the state: {exc}"
                        ) from exc
                    raise
        except (UploadStateInvalid, StorageUnavailable):
            # A completion whose answer was lost (timeout, dropped connection) may
            # have succeeded; its retry, or a retried commit, then finds the upload
            # gone. The object under this upload's own key tells.
            if self._holds(f"{BLOBS}/{token.upload_id}", token.size, expected):
                return
            raise

    def abort_upload(self, state: UploadState) -> None:
        self._cleanup(UploadToken.decode(state).upload_id)

    def _cleanup(self, upload_id: str, keep_mpu: str | None = None) -> None:
        """Delete an upload's tails and abort its multipart uploads (orphans included)."""
        blob = self._blob_key(upload_id)
        with self._errors(f"clean up upload {upload_id}"):
            for mpu_key, mpu in self._multipart_uploads(blob):
                if mpu_key == blob and mpu != keep_mpu:
                    with contextlib.suppress(UploadStateInvalid):
                        self._abort(blob, mpu)
            for full, _size in self._list_objects(self._upload_prefix(upload_id)):
                self._client.delete_object(Bucket=self.config.bucket, Key=full)

    def list_uploads(self) -> Iterator[tuple[str, UploadState]]:
        tails: dict[str, tuple[str, int]] = {}
        base = f"{self._root}{UPLOADS}/"
        for full, size in self._list_objects(base):
            parts = full[len(base) :].split("/")
            if len(parts) == 2 and parts[1].startswith("tail-"):
                # Any tail will do: the state is best effort (for orphan sweeps).
                tails[parts[0]] = (full, size)
        mpus: dict[str, str] = {}
        blobs = f"{self._root}{BLOBS}/"
        for key, mpu in self._multipart_uploads(blobs):
            mpus[key[len(blobs) :]] = mpu
        for upload_id in sorted(tails.keys() | mpus.keys()):
            try:
                check_upload_id(upload_id)
            except InvalidKey:
                continue
            tail, size = tails.get(upload_id, (None, 0))
            token = UploadToken(upload_id, mpus.get(upload_id), (), tail, size)
            yield upload_id, token.state()

    def redirect_url(self, key: str, expires_in: int) -> str | None:
        full = self._key(key)
        if not self.config.redirect:
            return None
        with self._errors(key):
            url: str = self._client.generate_presigned_url(
                "get_object",
                Params={"Bucket": self.config.bucket, "Key": full},
                ExpiresIn=expires_in,
            )
        return url
