"""Start real S3-compatible servers (moto, rclone) on 127.0.0.1 for tests.

Reusable from any test module: each ``start_*`` returns a running
:class:`S3Server`; call ``stop()`` when done. A missing tool raises
:class:`ToolMissing`; callers skip on it, except under ``CI=true`` where a
missing tool must fail the run.
"""

from __future__ import annotations

import itertools
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from storage.s3 import S3Config, S3Driver

STARTUP_TIMEOUT = 30.0


class ToolMissing(RuntimeError):
    """The server binary is not installed."""


@dataclass
class S3Server:
    name: str
    endpoint_url: str
    access_key: str
    secret_key: str
    region: str
    process: subprocess.Popen[bytes]
    # Directory rclone serves (bucket = top-level directory); None for moto.
    data_dir: Path | None = None
    _cleanup: list[Path] = field(default_factory=list)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        for path in self._cleanup:
            shutil.rmtree(path, ignore_errors=True)

    def client(self) -> Any:
        """A plain boto3 client for test set-up and inspection."""
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name=self.region,
            config=Config(
                s3={"addressing_style": "path"},
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
            ),
        )

    def create_bucket(self, bucket: str) -> None:
        self.client().create_bucket(Bucket=bucket)

    def leftovers(self, bucket: str) -> list[str]:
        """Objects and unfinished multipart uploads still in ``bucket``."""
        client = self.client()
        found = [o["Key"] for o in client.list_objects_v2(Bucket=bucket).get("Contents", [])]
        found += [f"multipart:{u['Key']}" for u in self._multipart_uploads(bucket)]
        return found

    def _multipart_uploads(self, bucket: str) -> list[dict[str, Any]]:
        from botocore.exceptions import ClientError

        try:
            uploads: list[dict[str, Any]] = (
                self.client().list_multipart_uploads(Bucket=bucket).get("Uploads", [])
            )
        except ClientError as exc:
            # rclone answers NoSuchUpload for a bucket that never had an upload.
            if exc.response.get("Error", {}).get("Code") != "NoSuchUpload":
                raise
            return []
        return uploads

    def delete_bucket(self, bucket: str) -> None:
        """Empty and remove ``bucket`` (best effort, for teardown)."""
        client = self.client()
        for upload in self._multipart_uploads(bucket):
            client.abort_multipart_upload(
                Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"]
            )
        for obj in client.list_objects_v2(Bucket=bucket).get("Contents", []):
            client.delete_object(Bucket=bucket, Key=obj["Key"])
        try:
            client.delete_bucket(Bucket=bucket)
        except Exception:
            # rclone may keep empty directories after racing deletes.
            if self.data_dir is None:
                raise
            shutil.rmtree(self.data_dir / bucket, ignore_errors=True)


def ci_requires_tools() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _find_tool(name: str) -> str:
    # Prefer the tool installed next to the running interpreter (the venv).
    candidate = Path(sys.executable).parent / name
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    if found is None:
        raise ToolMissing(f"{name} is not installed (pip install the test extras)")
    return found


def _wait_ready(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{url} exited early: {log.read_text(errors='replace')[-2000:]}")
        try:
            urllib.request.urlopen(url, timeout=1).close()
            return
        except urllib.error.HTTPError:
            return  # Any HTTP answer (403 for an unsigned request) means it is up.
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"{url} did not start within {STARTUP_TIMEOUT}s")


def start_moto() -> S3Server:
    tool = _find_tool("moto_server")
    port = free_port()
    logdir = Path(tempfile.mkdtemp(prefix="moto-"))
    log = logdir / "moto.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [tool, "-H", "127.0.0.1", "-p", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    _wait_ready(url, process, log)
    return S3Server("moto", url, "testing", "testing", "us-east-1", process, None, [logdir])


def start_rclone(*, streaming: bool = False, data_dir: Path | None = None) -> S3Server:
    """rclone serving a temp dir (or ``data_dir``); ``streaming`` keeps rclone's default
    multipart mode.

    In streaming mode rclone cannot replace a part already sent, which an
    upload resumed after an abandoned writer needs; the conformance suite
    therefore runs with ``--disable-multipart-streaming`` (parts in memory).
    """
    tool = _find_tool("rclone")
    port = free_port()
    root = Path(tempfile.mkdtemp(prefix="rclone-s3-"))
    data = data_dir or root / "data"
    data.mkdir(exist_ok=True)
    log = root / "rclone.log"
    access, secret = "lading-access", "lading-secret-key"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                tool,
                "serve",
                "s3",
                "--config",
                "",
                "--auth-key",
                f"{access},{secret}",
                "--addr",
                f"127.0.0.1:{port}",
                "--no-modtime",
                # rclone's removal of emptied directories races with PUTs into
                # them; keeping directories makes lost writes rarer (not gone).
                "--no-cleanup",
                *([] if streaming else ["--disable-multipart-streaming"]),
                str(data),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    _wait_ready(url, process, log)
    name = "rclone-streaming" if streaming else "rclone"
    return S3Server(name, url, access, secret, "us-east-1", process, data, [root])


# The S3 minimum, so tests cross part boundaries with little data.
TEST_PART_SIZE = 5 * 1024 * 1024
_bucket_numbers = itertools.count()


def s3_driver_for(server: S3Server, bucket: str, **overrides: object) -> S3Driver:
    """An S3Driver on ``server``; ``overrides`` are S3Config fields."""
    options: dict[str, object] = {
        "bucket": bucket,
        "endpoint_url": server.endpoint_url,
        "region": server.region,
        "prefix": "registry/v1",
        "path_style": True,
        "access_key": server.access_key,
        "secret_key": server.secret_key,
        "part_size": TEST_PART_SIZE,
    }
    options.update(overrides)
    return S3Driver(S3Config(**options))  # type: ignore[arg-type]


def fresh_bucket(server: S3Server) -> str:
    """Create and return a bucket name unique within this test process."""
    name = f"test-{os.getpid()}-{next(_bucket_numbers)}"
    server.create_bucket(name)
    return name
