"""A PATCH whose new state the database refuses to record loses nothing acknowledged.

The S3 writer stores a PATCH's bytes (parts, a new tail object) before the database
records the new state; when that record fails, the row still names the previous
state, whose tail must still be there. The database refuses for real: a trigger
makes every write of an upload's size fail as a full disk would (PostgreSQL: SQLSTATE
53100 disk_full), while the lease's release, which writes no size, still goes through.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable

import pytest
from s3e2e_support import MiB, S3Target, patch, start_upload, with_digest
from support.refusals import refusing
from support.server import RegistryServer

REPO = "s3e2e/unrecorded"


@pytest.mark.parametrize("acked_size", [MiB, 6 * MiB], ids=["tail-only", "with-parts"])
def test_unrecorded_patch_keeps_the_upload(
    s3_lading: Callable[..., RegistryServer], s3: S3Target, acked_size: int
) -> None:
    server = s3_lading(LADING_S3_PART_SIZE=str(5 * MiB))
    rng = random.Random(acked_size)
    acked, refused, last = rng.randbytes(acked_size), rng.randbytes(MiB + 7), rng.randbytes(99)
    digest = "sha256:" + hashlib.sha256(acked + refused + last).hexdigest()
    with server.client(timeout=60) as client:
        url = patch(client, start_upload(client, REPO), 0, acked)
        # Its own connection: the server may close one after an internal error.
        with (
            refusing(server, "UPDATE OF size", "upload_sessions"),
            server.client(timeout=60) as refused_client,
        ):
            response = refused_client.patch(
                url,
                content=refused,
                headers={"Content-Range": f"{len(acked)}-{len(acked) + len(refused) - 1}"},
            )
        assert response.status_code >= 500, response.text
        status = client.get(url)
        assert status.status_code == 204, status.text
        assert status.headers["Range"] == f"0-{len(acked) - 1}"
        # The client resumes from the last acknowledged offset.
        url = patch(client, url, len(acked), refused)
        url = patch(client, url, len(acked) + len(refused), last)
        done = client.put(with_digest(url, digest), headers={"Content-Length": "0"})
        assert done.status_code == 201, done.text
        assert client.get(f"/v2/{REPO}/blobs/{digest}").content == acked + refused + last
    assert s3.upload_leftovers() == []
