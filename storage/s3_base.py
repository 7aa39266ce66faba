"""The S3 driver's plumbing: configuration, the boto3 client, error translation
and the low-level calls the upload writer uses (``storage.s3`` builds the
driver contract on top).

One boto3 client is shared by every thread: clients are thread-safe,
sessions are not, so the session is used only in the constructor.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
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

from storage.driver import (
    InvalidKey,
    ObjectNotFound,
    StorageError,
    StorageFull,
    StorageUnavailable,
    UploadStateInvalid,
)
from storage.keys import check_key, check_prefix
from storage.s3_parts import BufferPool, PartBody, check_max_parts, check_part_size
from storage.s3_uploads import new_tail_name

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

UPLOADS = "_uploads"
BLOBS = "_blobs"
NOT_FOUND = frozenset({"NoSuchKey", "404", "NotFound"})
_DENIED = frozenset(
    {"AccessDenied", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch", "AllAccessDisabled"}
)


def error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _is_full(code: str, status: object, message: str) -> bool:
    """Whether an S3 error says the store has no space left.

    MinIO answers 507 Insufficient Storage with code XMinioStorageFull, and may pass
    ENOSPC through in an InternalError's message. rclone's ENOSPC is an InternalError
    that says nothing more, so it stays an outage (docs/s3.md).
    """
    if code == "XMinioStorageFull" or status == 507:
        return True
    return code == "InternalError" and "no space left on device" in message.lower()


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
    # CompleteMultipartUpload only: servers that assemble the object before they
    # answer (rclone writes it to disk) can take minutes for a large blob.
    complete_timeout: float = 600.0
    max_retries: int = 4
    # Every part of an upload has this size (the last may be shorter), and reads
    # fetch ranges of this size; at most max_concurrency of either per request.
    part_size: int = 8 * 1024 * 1024
    max_concurrency: int = 4
    max_pool_connections: int = 64
    # S3 allows 10,000 parts per upload; some stores fewer (Scaleway: 1,000).
    max_parts: int = 10_000

    def __post_init__(self) -> None:
        if not self.bucket:
            raise ValueError("S3Config.bucket is required")
        check_part_size(self.part_size)
        check_max_parts(self.max_parts)
        if self.complete_timeout <= 0 or self.read_timeout <= 0:
            raise ValueError("S3Config timeouts must be positive")
        if not 1 <= self.max_concurrency <= self.max_pool_connections:
            raise ValueError(
                "S3Config.max_concurrency must be between 1 and max_pool_connections "
                f"({self.max_pool_connections}), not {self.max_concurrency}"
            )
        if (self.access_key is None) != (self.secret_key is None):
            raise ValueError("S3Config needs both access_key and secret_key, or neither")
        if self.max_retries < 0:
            raise ValueError("S3Config.max_retries must be >= 0")
        check_prefix(self.prefix)


class S3Base:
    """Client, keys and error translation shared by the driver and its upload writer."""

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
        # botocore has no per-call read timeout, hence a client for completions.
        self._complete_client: S3Client = session.client(
            "s3",
            endpoint_url=config.endpoint_url,
            config=self._botocore_config(retries=True, read_timeout=config.complete_timeout),
        )
        # check() must fail fast rather than back off through retries.
        self._check_client: S3Client = session.client(
            "s3", endpoint_url=config.endpoint_url, config=self._botocore_config(retries=False)
        )
        # Part uploads and read-ahead of every request; each request bounds its own
        # share, this bounds the threads (one pooled connection each).
        self.executor = ThreadPoolExecutor(
            max_workers=config.max_pool_connections, thread_name_prefix="s3-transfer"
        )
        # Enough idle buffers for one request's parts; more requests allocate more.
        self.buffers = BufferPool(config.part_size, keep=config.max_concurrency + 1)

    def _botocore_config(self, *, retries: bool, read_timeout: float | None = None) -> Config:
        c = self.config
        return Config(
            connect_timeout=c.connect_timeout if retries else min(c.connect_timeout, 3.0),
            read_timeout=read_timeout or (c.read_timeout if retries else min(c.read_timeout, 10.0)),
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
        code = error_code(exc)
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        if code in NOT_FOUND:
            raise ObjectNotFound(what) from exc
        if code == "NoSuchUpload":
            raise UploadStateInvalid(f"multipart upload is gone ({what})") from exc
        if code == "NoSuchBucket":
            raise StorageUnavailable(f"S3 {self._where} does not exist") from exc
        if code in _DENIED:
            raise StorageUnavailable(f"access denied to S3 {self._where} ({code})") from exc
        message = error.get("Message", "")
        if _is_full(code, status, message):
            raise StorageFull(f"S3 {self._where} is full ({code or status}) on {what}") from exc
        raise StorageUnavailable(
            f"S3 error {code or status} on {what} ({self._where}): {message}"
        ) from exc

    def _key(self, key: str) -> str:
        """Full S3 key of a user key that may be read or deleted."""
        check_key(key)
        if key.split("/", 1)[0] == UPLOADS:
            raise InvalidKey(f"reserved key: {key!r}")
        return self._root + key

    def _write_key(self, key: str) -> str:
        full = self._key(key)
        if key.split("/", 1)[0] == BLOBS:
            raise InvalidKey(f"reserved key: {key!r}")
        return full

    def _upload_prefix(self, upload_id: str) -> str:
        return f"{self._root}{UPLOADS}/{upload_id}/"

    def _blob_key(self, upload_id: str) -> str:
        return f"{self._root}{BLOBS}/{upload_id}"

    def _list_objects(self, search: str) -> Iterator[tuple[str, int]]:
        paginator = self._client.get_paginator("list_objects_v2")
        with self._errors(f"list {search!r}"):
            for page in paginator.paginate(Bucket=self.config.bucket, Prefix=search):
                for obj in page.get("Contents", []):
                    yield obj["Key"], obj["Size"]

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
                if error_code(exc) != "NoSuchUpload":
                    raise

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

    def upload_part(self, upload_id: str, mpu: str, number: int, body: bytes | bytearray) -> str:
        with self._errors(f"upload {upload_id} part {number}"):
            try:
                response = self._client.upload_part(
                    Bucket=self.config.bucket,
                    Key=self._blob_key(upload_id),
                    UploadId=mpu,
                    PartNumber=number,
                    Body=PartBody(body),  # type: ignore[arg-type]
                )
            except ClientError as exc:
                if error_code(exc) == "NotImplemented":
                    # rclone's streaming multipart cannot replace a part an
                    # abandoned writer already sent; only a new upload helps.
                    raise UploadStateInvalid(
                        f"S3 server cannot replace part {number} of upload {upload_id}: "
                        f"{exc.response.get('Error', {}).get('Message', '')}"
                    ) from exc
                raise
        return response["ETag"]
