"""An upload survives a full server restart: every acknowledged byte is durable state."""

from __future__ import annotations

import httpx
from support.server import RegistryFactory, start_lading
from v2client import digest_of, finish_upload, location, patch_chunk, random_bytes


def test_chunked_upload_survives_restart(lading_factory: RegistryFactory) -> None:
    first = lading_factory(args=["--workers", "1"])
    data = random_bytes(30_000, seed=30)
    repo = "api/restart"
    with first.client() as client:
        started = client.post(f"/v2/{repo}/blobs/uploads/")
        assert started.status_code == 202, started.text
        url = location(started)
        path = httpx.URL(url).raw_path.decode()
        response = patch_chunk(client, url, data[:10_000], 0)
        assert response.status_code == 202, response.text
        response = patch_chunk(client, location(response), data[10_000:20_000], 10_000)
        assert response.status_code == 202, response.text
        path = httpx.URL(location(response)).raw_path.decode()

    first.stop()
    # Same data directory, new process (and port): the session must still be there.
    second = start_lading(first.data_dir.parent, args=["--workers", "1"])
    lading_factory.servers.append(second)
    with second.client() as client:
        status = client.get(path)
        assert status.status_code == 204, status.text
        assert status.headers["Range"].removeprefix("bytes=") == "0-19999"
        url = location(status)
        # An out-of-order chunk is still refused after the restart.
        assert patch_chunk(client, url, data[5_000:6_000], 5_000).status_code == 416
        response = patch_chunk(client, url, data[20_000:], 20_000)
        assert response.status_code == 202, response.text
        done = finish_upload(client, location(response), digest_of(data))
        assert done.status_code == 201, done.text
        pulled = client.get(f"/v2/{repo}/blobs/{digest_of(data)}")
        assert pulled.status_code == 200
        assert pulled.content == data
