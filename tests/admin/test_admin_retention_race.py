"""Retention apply while a push goes on: what the push made reachable after the plan was
made stays. The push is real (HTTP to a ``lading serve``), and SQLAlchemy's statement
events time it between the plan's last read and the deleting transaction, which run
in-process on the server's own database. Under LADING_TEST_DATABASE=postgres the push
lands between the catalog's own SELECTs (each sees newer commits there), which used to end
in a KeyError: a 500 for tag and manifest listings during pushes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from admin_support import OCI_INDEX, OCI_MANIFEST, push_image, sha256
from sqlalchemy import event
from support.server import RegistryServer

from registry.app import build_components
from registry.http.admin import build_admin_api
from registry.services.retention import Rules
from registry.settings import Settings


@pytest.fixture
def components(cleanup_server: RegistryServer) -> Iterator[Any]:
    """A server of its own: the in-process apply writes to its audit log."""
    marker = cleanup_server.data_dir / "test-database-url"  # LADING_TEST_DATABASE=postgres
    url = marker.read_text().strip() if marker.exists() else None
    built = build_components(Settings(data_dir=cleanup_server.data_dir, database_url=url))
    yield built
    built.db.dispose()


@pytest.fixture
def own_client(cleanup_server: RegistryServer) -> Iterator[httpx.Client]:
    with cleanup_server.client(timeout=60.0) as http_client:
        yield http_client


def test_an_index_pushed_after_the_plan_keeps_its_children(
    own_client: httpx.Client, repo: str, components: Any
) -> None:
    client = own_client
    old = push_image(client, repo, "old", 95)
    index = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_INDEX,
        "manifests": [{"mediaType": OCI_MANIFEST, "digest": old.digest,
                       "size": old.manifest_size,
                       "platform": {"os": "linux", "architecture": "amd64"}}],
    }).encode()  # fmt: skip
    pushed: list[int] = []

    def push_index_once(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        # The plan's last read: which blobs other manifests still use.
        if "FROM manifest_blobs" in statement and not pushed:
            put = client.put(
                f"/v2/{repo}/manifests/keep", content=index, headers={"Content-Type": OCI_INDEX}
            )
            pushed.append(put.status_code)

    api = build_admin_api(
        components.settings, components.db, components.driver, components.manifests
    )
    event.listen(components.db.engine, "after_cursor_execute", push_index_once)
    try:
        plan = api.retention.apply(
            [Rules(name="race", repository_pattern=repo, keep_regex="keep.*")], "test"
        )
    finally:
        event.remove(components.db.engine, "after_cursor_execute", push_index_once)
    assert pushed == [201]
    assert [m.digest for r in plan.repositories for m in r.manifests] == [old.digest]
    # The planned tag went; the image the new index lists did not.
    assert client.get(f"/v2/{repo}/manifests/old").status_code == 404
    kept = client.get(f"/v2/{repo}/manifests/keep", headers={"Accept": OCI_INDEX})
    assert kept.status_code == 200 and sha256(kept.content) == sha256(index)
    child = client.get(f"/v2/{repo}/manifests/{old.digest}", headers={"Accept": OCI_MANIFEST})
    assert child.status_code == 200, "retention deleted an image a kept index lists"
