"""S3 driver: objects in a bucket of any S3-compatible endpoint, via boto3.

Layout below the configured prefix: user keys as given; ``_uploads/<id>/``
holds upload tails (never listed); ``_blobs/<id>`` is where large uploads
are completed, so commit needs no extra copy (see ``storage.s3_uploads``).

One boto3 client is shared by every thread: clients are thread-safe,
sessions are not, so the session is used only in the constructor.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, NoReturn

import boto3
import urllib3.exceptions
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    NoCredentialsError,
    ReadTimeoutError,
)
from botocore.exceptions import (
    ConnectionError as BotoConnectionError,
)
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
from storage.s3_uploads import MIN_PART_SIZE, S3UploadWriter, UploadToken, new_tail_name

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

READ_CHUNK = 1024 * 1024
_UPLOADS = "_uploads"
_BLOBS = "_blobs"
_NOT_FOUND = frozenset({"NoSuchKey", "404", "NotFound"})
_DENIED = frozenset(
    {"AccessDenied", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch", "AllAccessDisabled"}
)


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


class UploadNotReadable(StorageError):
    """S3 cannot read back parts of a multipart upload before it is completed."""


@dataclass(frozen=True, slots=True)
class S3Config:
    bucket: str
    endpoint_url: str | None = None
    region: str = "us-east-1"
    prefix: str = ""
    path_style: bool = False
    # Both or neither; without them boto3's standard credential chain is used.
    access_key: str | None = None
    secret_key: str | None = None
    redirect: bool = False
    connect_timeout: float = 5.0
    read_timeout: float = 60.0
    max_retries: int = 4
    part_size: int = 8 * 1024 * 1024
    max_pool_connections: int = 64

    def __post_init__(self) -> None:
        if not self.bucket:
            raise ValueError("S3Config.bucket is required")
        if self.part_size < MIN_PART_SIZE:
            raise ValueError("S3Config.part_size must be at least 5 MiB")
        if (self.access_key is None) != (self.secret_key is None):
            raise ValueError("S3Config needs both access_key and secret_key, or neither")
        if self.max_retries < 0:
            raise ValueError("S3Config.max_retries must be >= 0")
        check_prefix(self.prefix)


class S3Driver:
    """Stores objects in ``config.bucket`` under ``config.prefix``."""

    name = "s3"

    def __init__(self, config: S3Config) -> None:
        self.config = config
        stripped = config.prefix.strip("/")
        self._root = f"{stripped}/" if stripped else ""
        self._where = f"bucket {config.bucket!r} at {config.endpoint_url or 'AWS S3'}"
        session = boto3.session.Session(
            aws_access_key_id=config.access_key,
            aws_secret_access_key=config.secret_key,
            region_name=config.region,
        )
        self._client: S3Client = session.client(
            "s3", endpoint_url=config.endpoint_url, config=self._botocore_config(retries=True)
        )
        # check() must fail fast rather than back off through retries.
        self._check_client: S3Client = session.client(
            "s3", endpoint_url=config.endpoint_url, config=self._botocore_config(retries=False)
        )

    def _botocore_config(self, *, retries: bool) -> Config:
        c = self.config
        return Config(
            connect_timeout=c.connect_timeout if retries else min(c.connect_timeout, 3.0),
            read_timeout=c.read_timeout if retries else min(c.read_timeout, 10.0),
            retries={"total_max_attempts": c.max_retries + 1 if retries else 1, "mode": "standard"},
            s3={"addressing_style": "path" if c.path_style else "auto"},
            signature_version="s3v4",
            max_pool_connections=c.max_pool_connections,
            # Many S3-compatible servers reject the newer default checksum headers.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )

    # -- helpers -----------------------------------------------------------
    @contextlib.contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        """Translate botocore/urllib3 failures into driver errors."""
        try:
            yield
        except StorageError:
            raise
        except ClientError as exc:
            self._raise_client_error(exc, what)
        except NoCredentialsError as exc:
            raise StorageUnavailable(f"no S3 credentials found for {self._where}") from exc
        except ReadTimeoutError as exc:
            raise StorageUnavailable(f"S3 timed out on {what} ({self._where})") from exc
        except BotoConnectionError as exc:
            raise StorageUnavailable(f"cannot reach S3 {self._where}: {exc}") from exc
        except (BotoCoreError, urllib3.exceptions.HTTPError, OSError) as exc:
            raise StorageUnavailable(f"S3 request failed on {what} ({self._where}): {exc}") from exc

    def _raise_client_error(self, exc: ClientError, what: str) -> NoReturn:
        error = exc.response.get("Error", {})
        code = _code(exc)
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        if code in _NOT_FOUND:
            raise ObjectNotFound(what) from exc
        if code == "NoSuchUpload":
            raise UploadStateInvalid(f"multipart upload is gone ({what})") from exc
        if code == "NoSuchBucket":
            raise StorageUnavailable(f"S3 {self._where} does not exist") from exc
        if code in _DENIED:
            raise StorageUnavailable(f"access denied to S3 {self._where} ({code})") from exc
        message = error.get("Message", "")
        raise StorageUnavailable(
            f"S3 error {code or status} on {what} ({self._where}): {message}"
        ) from exc

    def _key(self, key: str) -> str:
        """Full S3 key of a user key that may be read or deleted."""
        check_key(key)
        if key.split("/", 1)[0] == _UPLOADS:
            raise InvalidKey(f"reserved key: {key!r}")
        return self._root + key

    def _write_key(self, key: str) -> str:
        full = self._key(key)
        if key.split("/", 1)[0] == _BLOBS:
            raise InvalidKey(f"reserved key: {key!r}")
        return full

    def _upload_prefix(self, upload_id: str) -> str:
        return f"{self._root}{_UPLOADS}/{upload_id}/"

    def _blob_key(self, upload_id: str) -> str:
        return f"{self._root}{_BLOBS}/{upload_id}"

    # -- contract ----------------------------------------------------------
    def check(self) -> None:
        client = self._check_client
        with self._errors("check"):
            try:
                client.head_bucket(Bucket=self.config.bucket)
            except ClientError as exc:
                if _code(exc) in ("404", "NoSuchBucket", "NotFound"):
                    raise StorageUnavailable(f"S3 {self._where} does not exist") from exc
                raise
            # Prove we may write; a flat key under _uploads/ is never listed.
            probe = f"{self._root}{_UPLOADS}/.probe-{uuid.uuid4().hex}"
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
        bucket = self.config.bucket
        with self._errors(what):
            try:
                if offset or length is not None:
                    end = "" if length is None else str(offset + length - 1)
                    response = self._client.get_object(
                        Bucket=bucket, Key=full, Range=f"bytes={offset}-{end}"
                    )
                else:
                    response = self._client.get_object(Bucket=bucket, Key=full)
            except ClientError as exc:
                # The object exists but ends before offset (or is empty).
                if _code(exc) == "InvalidRange":
                    return iter(())
                raise
        return self._stream(response["Body"], what)

    def _stream(self, body: StreamingBody, what: str) -> Iterator[bytes]:
        try:
            with self._errors(what):
                while chunk := body.read(READ_CHUNK):
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
        if prefix.split("/", 1)[0] == _UPLOADS:
            return
        search = f"{self._root}{prefix}/" if prefix else self._root
        for full, _size in self._list_objects(search):
            key = full[len(self._root) :]
            if key.startswith(f"{_UPLOADS}/"):
                continue
            try:
                yield check_key(key)
            except InvalidKey:
                continue  # A foreign object the driver could not address anyway.

    def _list_objects(self, search: str) -> Iterator[tuple[str, int]]:
        paginator = self._client.get_paginator("list_objects_v2")
        with self._errors(f"list {search!r}"):
            for page in paginator.paginate(Bucket=self.config.bucket, Prefix=search):
                for obj in page.get("Contents", []):
                    yield obj["Key"], obj["Size"]

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
            with self._errors(f"commit {key}"):
                try:
                    self._client.copy_object(
                        Bucket=self.config.bucket,
                        Key=target,
                        CopySource={"Bucket": self.config.bucket, "Key": token.tail},
                    )
                except ClientError as exc:
                    if _code(exc) in _NOT_FOUND:
                        raise UploadStateInvalid("upload is gone") from exc
                    raise
            self._cleanup(token.upload_id)
            return key
        self._complete(token)
        self._cleanup(token.upload_id, keep_mpu=token.mpu)
        return f"{_BLOBS}/{token.upload_id}"

    def _complete(self, token: UploadToken) -> None:
        assert token.mpu is not None and token.tail is not None
        blob = self._blob_key(token.upload_id)
        parts = [{"PartNumber": p.number, "ETag": p.etag} for p in token.parts]
        try:
            if token.tail_size:
                tail = self.read_internal(token.tail, token.tail_size)
                number = len(parts) + 1
                parts.append(
                    {
                        "PartNumber": number,
                        "ETag": self.upload_part(token.upload_id, token.mpu, number, tail),
                    }
                )
            with self._errors(f"complete upload {token.upload_id}"):
                try:
                    self._client.complete_multipart_upload(
                        Bucket=self.config.bucket,
                        Key=blob,
                        UploadId=token.mpu,
                        MultipartUpload={"Parts": parts},  # type: ignore[typeddict-item]
                    )
                except ClientError as exc:
                    if _code(exc) in ("InvalidPart", "EntityTooSmall"):
                        raise UploadStateInvalid(
                            f"upload parts do not match the state: {exc}"
                        ) from exc
                    raise
        except UploadStateInvalid:
            # A retried commit whose first attempt completed finds the object in place.
            with contextlib.suppress(StorageError):
                if self.stat(f"{_BLOBS}/{token.upload_id}").size == token.size:
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

    def _abort(self, key: str, mpu: str) -> None:
        with self._errors(f"abort {key}"):
            self._client.abort_multipart_upload(Bucket=self.config.bucket, Key=key, UploadId=mpu)

    def _multipart_uploads(self, search: str) -> Iterator[tuple[str, str]]:
        paginator = self._client.get_paginator("list_multipart_uploads")
        with self._errors(f"list multipart uploads {search!r}"):
            try:
                for page in paginator.paginate(Bucket=self.config.bucket, Prefix=search):
                    for upload in page.get("Uploads", []):
                        yield upload["Key"], upload["UploadId"]
            except ClientError as exc:
                # rclone answers NoSuchUpload for a bucket that never had one.
                if _code(exc) != "NoSuchUpload":
                    raise

    def list_uploads(self) -> Iterator[tuple[str, UploadState]]:
        tails: dict[str, tuple[str, int]] = {}
        base = f"{self._root}{_UPLOADS}/"
        for full, size in self._list_objects(base):
            parts = full[len(base) :].split("/")
            if len(parts) == 2 and parts[1].startswith("tail-"):
                # Any tail will do: the state is best effort (for orphan sweeps).
                tails[parts[0]] = (full, size)
        mpus: dict[str, str] = {}
        blobs = f"{self._root}{_BLOBS}/"
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

    # -- used by S3UploadWriter ----------------------------------------------
    def read_internal(self, full: str, size: int) -> bytes:
        """Read an upload's tail object; a missing tail means the upload is gone."""
        try:
            with self._errors("upload tail"):
                response = self._client.get_object(Bucket=self.config.bucket, Key=full)
                data = response["Body"].read()
        except ObjectNotFound as exc:
            raise UploadStateInvalid("upload is gone") from exc
        if len(data) < size:
            raise UploadStateInvalid("upload tail is shorter than its state says")
        return data[:size]

    def put_tail(self, upload_id: str, data: bytes) -> str:
        full = new_tail_name(self._upload_prefix(upload_id))
        with self._errors(f"upload {upload_id}"):
            self._client.put_object(Bucket=self.config.bucket, Key=full, Body=data)
        return full

    def delete_internal_quietly(self, full: str) -> None:
        with contextlib.suppress(StorageError), self._errors("delete tail"):
            self._client.delete_object(Bucket=self.config.bucket, Key=full)

    def create_multipart(self, upload_id: str) -> str:
        with self._errors(f"upload {upload_id}"):
            response = self._client.create_multipart_upload(
                Bucket=self.config.bucket, Key=self._blob_key(upload_id)
            )
        return response["UploadId"]

    def upload_part(self, upload_id: str, mpu: str, number: int, body: bytes) -> str:
        with self._errors(f"upload {upload_id} part {number}"):
            try:
                response = self._client.upload_part(
                    Bucket=self.config.bucket,
                    Key=self._blob_key(upload_id),
                    UploadId=mpu,
                    PartNumber=number,
                    Body=body,
                )
            except ClientError as exc:
                if _code(exc) == "NotImplemented":
                    # rclone's streaming multipart cannot replace a part an
                    # abandoned writer already sent; only a new upload helps.
                    raise UploadStateInvalid(
                        f"S3 server cannot replace part {number} of upload {upload_id}: "
                        f"{exc.response.get('Error', {}).get('Message', '')}"
                    ) from exc
                raise
        return response["ETag"]
