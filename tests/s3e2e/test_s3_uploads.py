"""Blob uploads and reads through ``lading serve`` on S3 (moto and rclone).

Lading's S3 part size is 8 MiB, so the blobs here span several multipart parts; the odd
chunk sizes make every part boundary fall inside a PATCH body, or between PATCHes.
"""

from __future__ import annotations

import hashlib
import random
import subprocess
import time
from collections.abc import Callable

import httpx
import pytest
from s3e2e_support import (
    MiB,
    S3Target,
    finish,
    patch,
    push_chunks,
    restart_lading,
    start_upload,
)
from s3servers import S3Server, fresh_bucket, s3_driver_for
from support.server import RegistryFactory, RegistryServer, lading_command, lading_env

# Odd sizes across several 8 MiB parts: 3 MiB + 7 MiB + 1 byte + ...; the server restarts
# after the first three.
BEFORE_RESTART = [3 * MiB, 7 * MiB, 1]
AFTER_RESTART = [5 * MiB + 3, 11 * MiB - 7, 1 * MiB, 9 * MiB + 5, 2]


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def sha512(data: bytes) -> str:
    return "sha512:" + hashlib.sha512(data).hexdigest()


def split(data: bytes, sizes: list[int]) -> list[bytes]:
    out, offset = [], 0
    for size in sizes:
        out.append(data[offset : offset + size])
        offset += size
    assert offset == len(data)
    return out


def blob_bytes(client: httpx.Client, repo: str, digest: str) -> bytes:
    response = client.get(f"/v2/{repo}/blobs/{digest}")
    assert response.status_code == 200, response.text[:500]
    assert response.headers["Docker-Content-Digest"] == digest
    return response.content


def test_chunked_upload_resumes_across_restart(
    lading_factory: RegistryFactory, s3: S3Target, s3_lading: Callable[..., RegistryServer]
) -> None:
    data = random.Random(1).randbytes(sum(BEFORE_RESTART + AFTER_RESTART))
    chunks = split(data, BEFORE_RESTART + AFTER_RESTART)
    digest = sha256(data)
    repo = "s3e2e/chunked"
    server = s3_lading()
    offset = 0
    with server.client() as client:
        url = start_upload(client, repo)
        for chunk in chunks[: len(BEFORE_RESTART)]:
            url = patch(client, url, offset, chunk)
            offset += len(chunk)
    # The first 10 MiB made a multipart upload with one part, plus a tail object.
    assert len(s3.multipart_uploads()) == 1, s3.multipart_uploads()

    server = restart_lading(lading_factory, server)
    with server.client() as client:
        url = httpx.URL(server.url).join(url.path)
        status = client.get(url)
        assert status.status_code == 204, status.text
        assert status.headers["Range"] == f"0-{offset - 1}"
        # A chunk that does not continue at the end is refused (and changes nothing).
        wrong = client.patch(
            url, content=b"x", headers={"Content-Range": f"{offset + 1}-{offset + 1}"}
        )
        assert wrong.status_code == 416, wrong.text
        for chunk in chunks[len(BEFORE_RESTART) :]:
            url = patch(client, url, offset, chunk)
            offset += len(chunk)
        done = finish(client, url, digest)
        assert done.status_code == 201, done.text
        assert done.headers["Docker-Content-Digest"] == digest
        assert blob_bytes(client, repo, digest) == data
        head = client.head(f"/v2/{repo}/blobs/{digest}")
        assert head.status_code == 200
        assert int(head.headers["Content-Length"]) == len(data)

        # Range reads, one across the first part boundary (8 MiB) and one at the end.
        for start, end in ((8 * MiB - 100, 8 * MiB + 99), (len(data) - 10, len(data) - 1)):
            ranged = client.get(
                f"/v2/{repo}/blobs/{digest}", headers={"Range": f"bytes={start}-{end}"}
            )
            assert ranged.status_code == 206, ranged.text
            assert ranged.headers["Content-Range"] == f"bytes {start}-{end}/{len(data)}"
            assert ranged.content == data[start : end + 1]
        unsatisfiable = client.get(
            f"/v2/{repo}/blobs/{digest}", headers={"Range": f"bytes={len(data)}-"}
        )
        assert unsatisfiable.status_code == 416

    assert s3.upload_leftovers() == []
    blobs = [k for k in s3.objects() if not k.startswith(f"{s3.prefix}/_uploads/")]
    assert blobs, "the committed blob is not in the bucket"
    assert all(k.startswith(f"{s3.prefix}/") for k in s3.objects())


def test_sha512_digests(s3: S3Target, s3_lading: Callable[..., RegistryServer]) -> None:
    """sha512 uploads have no matching hash state: Lading hashes the committed object."""
    repo = "s3e2e/sha512"
    big = random.Random(2).randbytes(19 * MiB + 11)  # three parts: one multipart upload
    small = random.Random(3).randbytes(1000)  # no part: the tail becomes the object
    server = s3_lading()
    with server.client() as client:
        push_chunks(client, repo, split(big, [6 * MiB, 13 * MiB + 11]), sha512(big))
        assert blob_bytes(client, repo, sha512(big)) == big
        url = start_upload(client, repo)
        done = client.put(url.copy_merge_params({"digest": sha512(small)}), content=small)
        assert done.status_code == 201, done.text
        assert blob_bytes(client, repo, sha512(small)) == small

        # A wrong sha512 is refused after hashing, and its committed object removed.
        before = set(s3.objects())
        wrong = "sha512:" + hashlib.sha512(b"something else").hexdigest()
        url = start_upload(client, repo)
        url = patch(client, url, 0, big[: 9 * MiB])
        refused = finish(client, url, wrong)
        assert refused.status_code == 400, refused.text
        assert refused.json()["errors"][0]["code"] == "DIGEST_INVALID"
        assert client.head(f"/v2/{repo}/blobs/{wrong}").status_code == 404
    assert s3.upload_leftovers() == []
    assert set(s3.objects()) == before


def test_cross_repository_mount(s3: S3Target, s3_lading: Callable[..., RegistryServer]) -> None:
    data = random.Random(4).randbytes(9 * MiB)
    digest = sha256(data)
    server = s3_lading()
    with server.client() as client:
        push_chunks(client, "s3e2e/source", [data], digest)
        objects = set(s3.objects())
        mounted = client.post(
            "/v2/s3e2e/target/blobs/uploads/", params={"mount": digest, "from": "s3e2e/source"}
        )
        assert mounted.status_code == 201, mounted.text
        assert mounted.headers["Docker-Content-Digest"] == digest
        assert blob_bytes(client, "s3e2e/target", digest) == data
        # A mount copies nothing in the bucket.
        assert set(s3.objects()) == objects
        # From a repository that lacks the blob, a mount falls back to an upload session.
        fallback = client.post(
            "/v2/s3e2e/third/blobs/uploads/", params={"mount": digest, "from": "s3e2e/empty"}
        )
        assert fallback.status_code == 202, fallback.text
        assert client.delete(fallback.headers["Location"]).status_code == 204
        assert client.get(f"/v2/s3e2e/third/blobs/{digest}").status_code == 404
    assert s3.upload_leftovers() == []


def test_redirect_to_presigned_url(s3: S3Target, s3_lading: Callable[..., RegistryServer]) -> None:
    data = random.Random(5).randbytes(10 * MiB + 1)
    digest = sha256(data)
    server = s3_lading(LADING_S3_REDIRECT="true")
    with server.client() as client:
        push_chunks(client, "s3e2e/redirect", [data[: 4 * MiB], data[4 * MiB :]], digest)
        response = client.get(f"/v2/s3e2e/redirect/blobs/{digest}")
        assert response.status_code == 307, response.text
        location = response.headers["Location"]
        assert location.startswith(s3.server.endpoint_url + "/"), location
        assert "X-Amz-Signature=" in location
        # A client holding the blob revalidates with the registry: 304, no redirect.
        cached = client.get(
            f"/v2/s3e2e/redirect/blobs/{digest}", headers={"If-None-Match": f'"{digest}"'}
        )
        assert cached.status_code == 304, cached.text
        assert "Location" not in cached.headers
        # HEAD still answers from the registry itself.
        head = client.head(f"/v2/s3e2e/redirect/blobs/{digest}")
        assert head.status_code == 200
        assert int(head.headers["Content-Length"]) == len(data)
    # The presigned URL needs no registry or S3 credentials.
    fetched = httpx.get(location, timeout=60)
    assert fetched.status_code == 200, fetched.text[:500]
    assert fetched.content == data
    tampered = httpx.get(location.replace("X-Amz-Signature=", "X-Amz-Signature=0"), timeout=60)
    if s3.kind != "moto":  # moto does not verify presigned signatures
        assert tampered.status_code == 403


def test_cancel_and_gc_leave_no_multipart_uploads(
    s3: S3Target, s3_lading: Callable[..., RegistryServer]
) -> None:
    data = random.Random(6).randbytes(13 * MiB)
    # The purge age is tiny (about 0.36 s), so a session idle for a second is stale.
    server = s3_lading(LADING_UPLOAD_PURGE_AFTER_HOURS="0.0001")
    with server.client() as client:
        cancelled = start_upload(client, "s3e2e/cancel")
        cancelled = patch(client, cancelled, 0, data)
        assert len(s3.multipart_uploads()) == 1
        assert client.delete(cancelled).status_code == 204
        assert s3.upload_leftovers() == []
        assert client.get(cancelled).status_code == 404

        stale = start_upload(client, "s3e2e/stale")
        stale = patch(client, stale, 0, data[: 6 * MiB])
        stale = patch(client, stale, 6 * MiB, data[6 * MiB :])
        assert len(s3.multipart_uploads()) == 1
        assert s3.upload_leftovers() != []

    # An orphan: upload bytes in the bucket that no session knows (a crash left them).
    orphan_driver = s3_driver_for(s3.server, s3.bucket, prefix=s3.prefix)
    writer = orphan_driver.resume_upload(orphan_driver.start_upload("f" * 32))
    writer.write(data[: 6 * MiB])
    writer.close()
    assert len(s3.multipart_uploads()) == 2

    time.sleep(1.0)
    env = lading_env(
        server.data_dir, {**server.extra_env, "LADING_UPLOAD_PURGE_AFTER_HOURS": "0.0001"}
    )
    gc = [*lading_command(), "gc", "--quiet", "--data-dir", str(server.data_dir)]
    first = subprocess.run(gc, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "1 stale uploads" in first.stdout, first.stdout
    with server.client() as client:
        assert client.get(stale).status_code == 404
    # The orphan is aborted once seen orphaned for longer than the purge age.
    time.sleep(1.0)
    second = subprocess.run(gc, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "1 stale uploads" in second.stdout, second.stdout
    assert s3.upload_leftovers() == []
    assert s3.multipart_uploads() == []


def _chunked_push_peak_rss(
    client: httpx.Client, repo: str, size: int, pid: int, seed: int
) -> tuple[int, int, str]:
    """Push ``size`` bytes in 16 MiB + 1 byte PATCHes (parts never line up with them);
    return the server's peak RSS, its sample count and the digest."""
    from support.memory import RssSampler

    piece = random.Random(seed).randbytes(16 * MiB)
    sha = hashlib.sha256()
    url = start_upload(client, repo)
    offset = 0
    with RssSampler(pid) as sampler:
        while offset < size:
            body = (offset.to_bytes(8, "big") + piece)[: min(16 * MiB + 1, size - offset)]
            sha.update(body)
            url = patch(client, url, offset, body)
            offset += len(body)
        digest = "sha256:" + sha.hexdigest()
        done = finish(client, url, digest)
        assert done.status_code == 201, done.text
    return sampler.peak, sampler.samples, digest


@pytest.mark.slow
def test_rss_does_not_grow_with_blob_size(
    rclone_s3: S3Server, lading_factory: RegistryFactory
) -> None:
    """No whole-blob buffering: pushing 512 MiB peaks no higher than pushing 64 MiB,
    give or take the allocator (the parts in memory are s3_max_concurrency + 1 = 5
    of 8 MiB either way).

    On rclone only: the bound concerns Lading's memory, and moto (pure Python, in
    memory) would only make the test three times slower.
    """
    s3 = S3Target(rclone_s3, fresh_bucket(rclone_s3))
    server = lading_factory(env=s3.env())
    with server.client(timeout=300) as client:
        small_peak, _, _ = _chunked_push_peak_rss(client, "s3e2e/small", 64 * MiB, server.pid, 7)
        size = 512 * MiB
        peak, samples, digest = _chunked_push_peak_rss(client, "s3e2e/big", size, server.pid, 8)
        print(
            f"{s3.kind}: peak RSS {small_peak / MiB:.0f} MiB pushing 64 MiB, "
            f"{peak / MiB:.0f} MiB pushing 512 MiB ({samples} samples)"
        )
        assert samples >= 5
        assert peak - small_peak < 32 * MiB, f"{small_peak / MiB:.0f} -> {peak / MiB:.0f} MiB"
        assert peak < 300 * MiB, f"peak RSS {peak / MiB:.0f} MiB"
        head = client.head(f"/v2/s3e2e/big/blobs/{digest}")
        assert int(head.headers["Content-Length"]) == size
    assert s3.upload_leftovers() == []
    server.stop()
    rclone_s3.delete_bucket(s3.bucket)


def test_blob_over_the_part_limit_answers_413(
    s3: S3Target, s3_lading: Callable[..., RegistryServer]
) -> None:
    """Past s3_part_size * s3_max_parts a push answers 413 SIZE_INVALID and loses nothing.

    Two parts of 5 MiB make a 10 MiB limit, so the test crosses it with little data.
    """
    repo = "s3e2e/limit"
    data = random.Random(9).randbytes(11 * MiB)
    server = s3_lading(LADING_S3_PART_SIZE=str(5 * MiB), LADING_S3_MAX_PARTS="2")
    with server.client(timeout=120) as client:
        url = start_upload(client, repo)
        url = patch(client, url, 0, data[: 6 * MiB])
        refused = client.patch(
            url,
            content=data[6 * MiB :],
            headers={"Content-Range": f"{6 * MiB}-{len(data) - 1}"},
        )
        assert refused.status_code == 413, refused.text[:500]
        error = refused.json()["errors"][0]
        assert error["code"] == "SIZE_INVALID", error
        assert f"2 parts of {5 * MiB} bytes (at most {10 * MiB} bytes" in error["message"], error
        assert "s3_part_size" in error["message"], error
        # The acknowledged 6 MiB are intact: the upload can still end with them.
        status = client.get(url)
        assert status.status_code == 204, status.text
        assert status.headers["Range"] == f"0-{6 * MiB - 1}"
        done = finish(client, url, sha256(data[: 6 * MiB]))
        assert done.status_code == 201, done.text
        assert blob_bytes(client, repo, sha256(data[: 6 * MiB])) == data[: 6 * MiB]

        # A single-request push over the limit is refused the same way, and leaves nothing.
        whole = client.post(
            f"/v2/{repo}/blobs/uploads/", params={"digest": sha256(data)}, content=data
        )
        assert whole.status_code == 413, whole.text[:500]
        assert whole.json()["errors"][0]["code"] == "SIZE_INVALID"
        assert client.head(f"/v2/{repo}/blobs/{sha256(data)}").status_code == 404
        # Exactly at the limit is fine.
        exact = data[: 10 * MiB]
        pushed = client.post(
            f"/v2/{repo}/blobs/uploads/", params={"digest": sha256(exact)}, content=exact
        )
        assert pushed.status_code == 201, pushed.text[:500]
    assert s3.upload_leftovers() == []


def test_patch_to_an_upload_lost_from_the_bucket_answers_404(
    s3: S3Target, s3_lading: Callable[..., RegistryServer]
) -> None:
    # Two whole 8 MiB parts leave an empty tail, whose existence the next PATCH
    # checks in the background: it must still answer 404 and store nothing.
    data = random.Random(7).randbytes(24 * MiB)
    server = s3_lading()
    with server.client() as client:
        url = start_upload(client, "s3e2e/lost")
        url = patch(client, url, 0, data[: 16 * MiB])
        bucket = s3.client()
        for upload in bucket.list_multipart_uploads(Bucket=s3.bucket).get("Uploads", []):
            bucket.abort_multipart_upload(
                Bucket=s3.bucket, Key=upload["Key"], UploadId=upload["UploadId"]
            )
        for key in s3.upload_leftovers():
            bucket.delete_object(Bucket=s3.bucket, Key=key)
        assert s3.upload_leftovers() == []
        response = client.patch(
            url,
            content=data[16 * MiB :],
            headers={
                "Content-Type": "application/octet-stream",
                "Content-Range": f"{16 * MiB}-{24 * MiB - 1}",
            },
        )
        assert response.status_code == 404, response.text[:500]
        assert response.json()["errors"][0]["code"] == "BLOB_UPLOAD_UNKNOWN"
        assert s3.upload_leftovers() == []


def test_debug_logs_hold_no_s3_credentials(
    s3: S3Target, s3_lading: Callable[..., RegistryServer]
) -> None:
    """At log level debug, botocore logged each request's Authorization header and
    signature, the presigned URL's signature among them: anyone reading the logs could
    fetch the blob. Its loggers stay at warning."""
    data = random.Random(7).randbytes(4096)
    digest = sha256(data)
    server = s3_lading(
        LADING_S3_REDIRECT="true", LADING_LOG_LEVEL="debug", LADING_LOG_FORMAT="json"
    )
    with server.client() as client:
        push_chunks(client, "s3e2e/quiet", [data], digest)
        response = client.get(f"/v2/s3e2e/quiet/blobs/{digest}")
        assert response.status_code == 307, response.text
    signature = httpx.URL(response.headers["Location"]).params["X-Amz-Signature"]
    log = server.log_path.read_text(errors="replace")
    assert signature not in log
    assert "Authorization" not in log and "botocore" not in log
    assert s3.server.secret_key not in log
