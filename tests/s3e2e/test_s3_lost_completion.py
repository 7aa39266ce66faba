"""A final PUT whose completion took effect but whose answer, and the check after it,
were lost: the client's retry must never record the earlier bytes under a new digest.

A proxy between Lading and the real S3 server (moto, rclone) holds the completion's
answer past ``s3_complete_timeout`` and cuts every other request from then on, so
Lading's retries and its check of the object fail and the PUT answers 503 with the
session kept. Once the network is back, a retry with another final chunk of the same
length (and that chunk's digest) finds the first chunk's object under the upload's
key; it is refused (rclone: 404 BLOB_UPLOAD_UNKNOWN; moto answers a part of a
completed upload with a 500, so there the outage goes on: 503), and the blob stays
unknown. A retry with the first chunk is what S3 holds, and succeeds.
"""

from __future__ import annotations

import hashlib
import os

from delay_proxy import DelayProxy
from s3e2e_support import MiB, S3Target, patch, start_upload, with_digest
from support.server import RegistryFactory


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def test_retry_with_another_final_chunk_does_not_reuse_the_completed_object(
    s3: S3Target, lading_factory: RegistryFactory
) -> None:
    proxy = DelayProxy(s3.server.endpoint_url, delay=4.0, hold="response", times=1, then_cut=True)
    try:
        env = s3.env(
            LADING_S3_ENDPOINT_URL=proxy.endpoint_url,
            LADING_S3_PART_SIZE=str(5 * MiB),
            LADING_S3_COMPLETE_TIMEOUT="1",
        )
        server = lading_factory(env=env)
        recorded = os.urandom(5 * MiB + 5)  # one part in S3, five bytes in the tail
        first, second = b"first!!", b"second!"
        with server.client(timeout=120) as client:
            url = patch(client, start_upload(client, "lost/completion"), 0, recorded)

            lost = client.put(with_digest(url, _digest(recorded + first)), content=first)
            assert lost.status_code == 503, lost.text
            assert client.get(url).headers["Range"] == f"0-{len(recorded) - 1}"  # kept
            proxy.heal()

            other = _digest(recorded + second)
            retried = client.put(with_digest(url, other), content=second)
            expected = 503 if s3.kind == "moto" else 404
            assert retried.status_code == expected, retried.text
            assert client.head(f"/v2/lost/completion/blobs/{other}").status_code == 404

            done = client.put(with_digest(url, _digest(recorded + first)), content=first)
            assert done.status_code == 201, done.text
            pulled = client.get(f"/v2/lost/completion/blobs/{_digest(recorded + first)}")
            assert pulled.content == recorded + first
    finally:
        proxy.close()
