"""A full S3 store end to end: pushes answered 507 STORAGE_FULL, sessions kept for the retry.

``lading serve`` talks to a real rclone through ``s3_full_proxy``, which answers writes as
MinIO does once full (HTTP 507 ``XMinioStorageFull``); rclone's own full disk is only a
500 (tests/storage/test_s3_driver_full.py).
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator

import httpx
import pytest
from s3_full_proxy import FullProxy
from s3e2e_support import MiB, S3Target, patch, start_upload, with_digest
from s3servers import S3Server, fresh_bucket
from support.server import RegistryFactory

REPO = "s3e2e/full"


@pytest.fixture
def proxy(rclone_s3: S3Server) -> Iterator[FullProxy]:
    full = FullProxy(rclone_s3.endpoint_url)
    try:
        yield full
    finally:
        full.close()


def _assert_full(response: httpx.Response, what: str) -> None:
    assert response.status_code == 507, f"{what}: {response.status_code} {response.text[:500]}"
    assert response.json()["errors"][0]["code"] == "STORAGE_FULL", response.text


def _assert_session(client: httpx.Client, url: httpx.URL, size: int) -> None:
    status = client.get(url)
    assert status.status_code == 204, status.text
    assert status.headers["Range"] == f"0-{max(size - 1, 0)}"


def test_full_store_answers_507_and_keeps_sessions(
    rclone_s3: S3Server, proxy: FullProxy, lading_factory: RegistryFactory
) -> None:
    target = S3Target(rclone_s3, fresh_bucket(rclone_s3))
    server = lading_factory(env=target.env(LADING_S3_ENDPOINT_URL=proxy.endpoint_url))
    rng = random.Random(17)
    first, second = rng.randbytes(MiB), rng.randbytes(MiB)
    chunked_digest = "sha256:" + hashlib.sha256(first + second).hexdigest()
    single = rng.randbytes(100_000)
    single_digest = "sha256:" + hashlib.sha256(single).hexdigest()
    with server.client(timeout=60) as client:
        chunked = patch(client, start_upload(client, REPO), 0, first)
        whole = start_upload(client, REPO)

        proxy.refusing = "writes"
        refused = client.patch(
            chunked, content=second, headers={"Content-Range": f"{MiB}-{2 * MiB - 1}"}
        )
        _assert_full(refused, "PATCH")
        _assert_session(client, chunked, MiB)
        # The docker/containerd push: the whole blob PUT on the session a POST opened.
        _assert_full(client.put(with_digest(whole, single_digest), content=single), "PUT")
        _assert_session(client, whole, 0)
        monolithic = client.post(
            f"/v2/{REPO}/blobs/uploads/", params={"digest": single_digest}, content=single
        )
        _assert_full(monolithic, "POST ?digest=")
        # Full only by the time the written upload is committed: the session survives too.
        proxy.refusing = "commits"
        refused_before = proxy.refused
        _assert_full(client.put(with_digest(whole, single_digest), content=single), "PUT")
        assert proxy.refused == refused_before + 1  # the commit, after the tail was written
        _assert_session(client, whole, 0)

        proxy.refusing = "nothing"
        done = client.put(with_digest(whole, single_digest), content=single)
        assert done.status_code == 201, done.text
        chunked = patch(client, chunked, MiB, second)
        done = client.put(with_digest(chunked, chunked_digest))
        assert done.status_code == 201, done.text
        for digest, data in ((single_digest, single), (chunked_digest, first + second)):
            assert client.get(f"/v2/{REPO}/blobs/{digest}").content == data
    assert target.upload_leftovers() == []
    rclone_s3.delete_bucket(target.bucket)


def test_refused_commit_keeps_acknowledged_bytes(
    rclone_s3: S3Server, proxy: FullProxy, lading_factory: RegistryFactory
) -> None:
    """A final PUT on a session holding acknowledged bytes whose commit is refused (507)
    leaves the session as it was, and the same PUT retried then succeeds.

    Covered: a bodyless PUT after PATCHes (a copy commits a tail-only upload, a
    completion a multipart one) and a PUT carrying the last chunk, small (read whole)
    and large (streamed); these put the session back as recorded before the PUT.
    """
    target = S3Target(rclone_s3, fresh_bucket(rclone_s3))
    env = target.env(LADING_S3_ENDPOINT_URL=proxy.endpoint_url, LADING_S3_PART_SIZE=str(5 * MiB))
    server = lading_factory(env=env)
    rng = random.Random(23)
    cases = [  # (acknowledged by PATCHes, last chunk of the PUT)
        (rng.randbytes(MiB), b""),
        (rng.randbytes(6 * MiB), b""),
        (rng.randbytes(MiB), rng.randbytes(100_000)),
        (rng.randbytes(6 * MiB), rng.randbytes(5 * MiB + 3)),
    ]
    with server.client(timeout=60) as client:
        sessions = [patch(client, start_upload(client, REPO), 0, acked) for acked, _ in cases]
        puts = []
        for url, (acked, last) in zip(sessions, cases, strict=True):
            digest = "sha256:" + hashlib.sha256(acked + last).hexdigest()
            headers = {"Content-Length": "0"}
            if last:
                headers = {"Content-Range": f"{len(acked)}-{len(acked) + len(last) - 1}"}
            puts.append((with_digest(url, digest), last, headers))

        proxy.refusing = "commits"
        for (url, last, headers), (acked, _) in zip(puts, cases, strict=True):
            _assert_full(client.put(url, content=last, headers=headers), f"PUT {len(acked)}")
            _assert_session(client, url, len(acked))

        proxy.refusing = "nothing"
        for (url, last, headers), (acked, _) in zip(puts, cases, strict=True):
            done = client.put(url, content=last, headers=headers)
            assert done.status_code == 201, done.text
            digest = done.headers["Docker-Content-Digest"]
            assert digest == url.params["digest"]
            assert client.get(f"/v2/{REPO}/blobs/{digest}").content == acked + last
    assert target.upload_leftovers() == []
    rclone_s3.delete_bucket(target.bucket)
