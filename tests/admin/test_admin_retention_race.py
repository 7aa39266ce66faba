"""Retention apply while a push goes on: what the push made reachable after the plan was
made stays. The push is real (HTTP to a ``lading serve``), and SQLAlchemy's statement
events time it between the plan's last read and the deleting transaction, which run
in-process on the server's own database. Under LADING_TEST_DATABASE=postgres the push
lands between the catalog's own SELECTs (each sees newer commits there), which used to end
in a KeyError: a 500 for tag and manifest listings during pushes."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from admin_support import OCI_INDEX, OCI_MANIFEST, push_image, sha256
from sqlalchemy import event, text
from support.blob_push import push_blob
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


def _waiting(components: Any, backends: int, timeout: float = 30.0) -> None:
    """Wait until ``backends`` sessions of the test database wait on a lock."""
    deadline = time.monotonic() + timeout
    sql = text(
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE wait_event_type = 'Lock' AND datname = current_database()"
    )
    with components.db.engine.connect() as conn:
        while time.monotonic() < deadline:
            if conn.execute(sql).scalar_one() >= backends:
                return
            conn.rollback()
            time.sleep(0.05)
    raise AssertionError(f"fewer than {backends} sessions waited on a lock")


def test_a_tag_pushed_while_apply_deletes_its_manifest_stays(
    own_client: httpx.Client, repo: str, components: Any
) -> None:
    """The push commits while the deleting statement waits for its lock on the manifest
    (PostgreSQL): the DELETE's NOT EXISTS was read before that commit, so it used to delete
    the manifest and, by cascade, the tag the push had just been told is stored."""
    if components.db.is_sqlite:
        pytest.skip("SQLite writers are serialized: no push commits inside a statement")
    client = own_client
    old = push_image(client, repo, "old", 96)
    body = client.get(f"/v2/{repo}/manifests/{old.digest}", headers={"Accept": OCI_MANIFEST})
    time.sleep(1.2)  # the push below then updates repositories.last_push_at
    pushed: list[int] = []
    applied: list[Any] = []
    with components.db.engine.connect() as holder:
        # Holds the push after it locked the manifest and wrote the tag, before commit.
        holder.execute(
            text("SELECT id FROM repositories WHERE name = :n FOR NO KEY UPDATE"), {"n": repo}
        )
        push = threading.Thread(
            target=lambda: pushed.append(
                client.put(
                    f"/v2/{repo}/manifests/keep",
                    content=body.content,
                    headers={"Content-Type": OCI_MANIFEST},
                ).status_code
            )
        )
        push.start()
        _waiting(components, 1)  # the push
        api = build_admin_api(
            components.settings, components.db, components.driver, components.manifests
        )
        rules = [Rules(name="race", repository_pattern=repo, keep_regex="keep.*")]
        apply = threading.Thread(target=lambda: applied.append(api.retention.apply(rules, "t")))
        apply.start()
        _waiting(components, 2)  # and the apply, on the push's manifest lock
        holder.rollback()
    push.join(60)
    apply.join(60)
    assert pushed == [201]
    assert [m.digest for r in applied[0].repositories for m in r.manifests] == [old.digest]
    assert client.get(f"/v2/{repo}/manifests/old").status_code == 404
    kept = client.get(f"/v2/{repo}/manifests/keep", headers={"Accept": OCI_MANIFEST})
    assert kept.status_code == 200, "retention deleted a tag whose push was acknowledged"


def test_a_signature_stays_with_an_image_tagged_after_the_plan(
    own_client: httpx.Client, repo: str, components: Any
) -> None:
    """The plan dooms an image and its referrer (a signature); a tag pushed onto the image
    after the plan keeps the image, and so its referrer, as the online collector does."""
    client = own_client
    old = push_image(client, repo, "old", 97)
    empty = push_blob(client, repo, b"{}")
    signature = push_blob(client, repo, b"signature of " + old.digest.encode())
    referrer = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "artifactType": "application/vnd.example.signature",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty, "size": 2},
        "layers": [{"mediaType": "application/octet-stream", "digest": signature,
                    "size": len(b"signature of " + old.digest.encode())}],
        "subject": {"mediaType": OCI_MANIFEST, "digest": old.digest, "size": old.manifest_size},
    }).encode()  # fmt: skip
    referrer_digest = sha256(referrer)
    put = client.put(
        f"/v2/{repo}/manifests/{referrer_digest}",
        content=referrer,
        headers={"Content-Type": OCI_MANIFEST},
    )
    assert put.status_code == 201, put.text
    body = client.get(f"/v2/{repo}/manifests/{old.digest}", headers={"Accept": OCI_MANIFEST})
    pushed: list[int] = []

    def tag_image_once(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        # The plan's last read: which blobs other manifests still use.
        if "FROM manifest_blobs" in statement and not pushed:
            put = client.put(
                f"/v2/{repo}/manifests/keep",
                content=body.content,
                headers={"Content-Type": OCI_MANIFEST},
            )
            pushed.append(put.status_code)

    api = build_admin_api(
        components.settings, components.db, components.driver, components.manifests
    )
    event.listen(components.db.engine, "after_cursor_execute", tag_image_once)
    try:
        plan = api.retention.apply(
            [Rules(name="race", repository_pattern=repo, keep_regex="keep.*")], "test"
        )
    finally:
        event.remove(components.db.engine, "after_cursor_execute", tag_image_once)
    assert pushed == [201]
    planned = {m.digest for r in plan.repositories for m in r.manifests}
    assert planned == {old.digest, referrer_digest}
    assert client.get(f"/v2/{repo}/manifests/keep").status_code == 200
    kept = client.get(f"/v2/{repo}/manifests/{referrer_digest}", headers={"Accept": OCI_MANIFEST})
    assert kept.status_code == 200, "retention deleted the signature of an image it kept"
