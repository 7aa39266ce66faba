"""Scope escalation attempts against a real token-mode server: each is refused and the
registry's content is unchanged afterwards (checked with the admin's own tokens)."""

from __future__ import annotations

from dataclasses import dataclass

import httpx
import pytest
from authn_support import Lading, SmallImage, bearer, challenge_params

ALICE, BOB, READER = "esc-alice", "esc-bob", "esc-reader"
PASSWORD = "escalation-pw-1"
OCI = "application/vnd.oci.image.manifest.v1+json"


@dataclass(frozen=True)
class World:
    app: SmallImage  # esc/app, alice/bob may pull and push
    secret: SmallImage  # secret/app, admins only


@pytest.fixture(scope="module")
def world(authn: Lading) -> World:
    for name in (ALICE, BOB, READER):
        authn.add_user(name, PASSWORD)
    authn.grant("user", ALICE, "esc/*", "pull,push")
    authn.grant("user", BOB, "esc/*", "pull,push")
    authn.grant("user", READER, "esc/*", "pull")
    admin = authn.admin_token("repository:esc/app:pull,push", "repository:secret/app:pull,push")
    return World(
        authn.push_small_image(admin, "esc/app", "v1", 11),
        authn.push_small_image(admin, "secret/app", "v1", 12),
    )


def _refused(response: httpx.Response) -> None:
    """A signed-in user whose account lacks the access: 403 DENIED (a new token won't help)."""
    assert response.status_code == 403, (response.request.method, response.request.url,
                                         response.text)  # fmt: skip
    assert response.json()["errors"][0]["code"] == "DENIED"


def test_push_with_a_pull_only_token_is_refused(authn: Lading, world: World) -> None:
    token = authn.token(READER, PASSWORD, "repository:esc/app:pull,push,delete")
    with authn.client() as client:
        assert client.get("/v2/esc/app/manifests/v1", headers=bearer(token)).status_code == 200
        _refused(client.post("/v2/esc/app/blobs/uploads/", headers=bearer(token)))
        digest = {"digest": world.app.layer_digest}
        _refused(client.post("/v2/esc/app/blobs/uploads/", params=digest,
                             content=world.app.layer, headers=bearer(token)))  # fmt: skip
        _refused(client.put("/v2/esc/app/manifests/evil", content=world.app.manifest,
                            headers={**bearer(token), "Content-Type": OCI}))  # fmt: skip
    assert authn.tags("esc/app") == ["v1"]


def test_writing_to_another_repository_is_refused(authn: Lading, world: World) -> None:
    token = authn.token(ALICE, PASSWORD, "repository:esc/app:pull,push",
                        "repository:secret/app:pull,push")  # fmt: skip
    with authn.client() as client:
        # esc/other is within Alice's rights (esc/*), just not in this token: a challenge.
        other = client.post("/v2/esc/other/blobs/uploads/", headers=bearer(token))
        assert other.status_code == 401, other.text
        assert challenge_params(other.headers["WWW-Authenticate"])["error"] == "insufficient_scope"
        # secret/app is beyond her account: denied outright.
        _refused(client.post("/v2/secret/app/blobs/uploads/", headers=bearer(token)))
        _refused(client.put("/v2/secret/app/manifests/evil", content=world.app.manifest,
                            headers={**bearer(token), "Content-Type": OCI}))  # fmt: skip
        _refused(client.get("/v2/secret/app/manifests/v1", headers=bearer(token)))
    assert authn.tags("secret/app") == ["v1"]
    assert authn.tags("esc/other") == []


def test_delete_needs_the_delete_action(authn: Lading, world: World) -> None:
    token = authn.token(ALICE, PASSWORD, "repository:esc/app:pull,push,delete")
    with authn.client() as client:
        _refused(client.delete(f"/v2/esc/app/manifests/{world.app.manifest_digest}",
                               headers=bearer(token)))  # fmt: skip
        _refused(client.delete("/v2/esc/app/manifests/v1", headers=bearer(token)))
        _refused(client.delete(f"/v2/esc/app/blobs/{world.app.layer_digest}",
                               headers=bearer(token)))  # fmt: skip
    assert authn.tags("esc/app") == ["v1"]
    for path in (f"/v2/esc/app/manifests/{world.app.manifest_digest}",
                 f"/v2/esc/app/blobs/{world.app.layer_digest}"):  # fmt: skip
        assert authn.admin_status("HEAD", path, "repository:esc/app:pull") == 200


def test_an_upload_session_belongs_to_its_creator(authn: Lading, world: World) -> None:
    alice = authn.token(ALICE, PASSWORD, "repository:esc/shared:pull,push")
    bob = authn.token(BOB, PASSWORD, "repository:esc/shared:pull,push")
    data = b"alice's chunk " * 100
    from support.oci import sha256_digest

    with authn.client() as client:
        started = client.post("/v2/esc/shared/blobs/uploads/", headers=bearer(alice))
        assert started.status_code == 202, started.text
        location = started.headers["Location"]
        first = client.patch(location, content=data[:700], headers={
            **bearer(alice), "Content-Type": "application/octet-stream",
            "Content-Range": "0-699"})  # fmt: skip
        assert first.status_code == 202, first.text
        location = first.headers["Location"]
        attempts = [
            client.patch(location, content=b"bob was here", headers={
                **bearer(bob), "Content-Type": "application/octet-stream",
                "Content-Range": "700-711"}),
            client.put(location, params={"digest": sha256_digest(data[:700])},
                       headers=bearer(bob)),
            client.get(location, headers=bearer(bob)),
            client.delete(location, headers=bearer(bob)),
        ]  # fmt: skip
        for response in attempts:
            assert response.status_code == 404, (response.request.method, response.text)
            assert response.json()["errors"][0]["code"] == "BLOB_UPLOAD_UNKNOWN"
        # Alice's session is intact: still 700 bytes, and she can finish it.
        status = client.get(location, headers=bearer(alice))
        assert status.status_code == 204
        assert status.headers["Range"] == "0-699"
        done = client.put(
            location,
            params={"digest": sha256_digest(data)},
            content=data[700:],
            headers={**bearer(alice), "Content-Type": "application/octet-stream"},
        )
        assert done.status_code == 201, done.text
        blob = client.get(f"/v2/esc/shared/blobs/{sha256_digest(data)}", headers=bearer(alice))
        assert blob.content == data


def test_mount_from_an_unpullable_repository_falls_back_to_upload(
    authn: Lading, world: World
) -> None:
    token = authn.token(ALICE, PASSWORD, "repository:esc/mine:pull,push",
                        "repository:esc/app:pull", "repository:secret/app:pull")  # fmt: skip
    secret_layer = world.secret.layer_digest
    with authn.client() as client:
        mounted = client.post("/v2/esc/mine/blobs/uploads/",
                              params={"mount": secret_layer, "from": "secret/app"},
                              headers=bearer(token))  # fmt: skip
        assert mounted.status_code == 202, mounted.text
        assert "/blobs/uploads/" in mounted.headers["Location"]
        # Without `from`, or naming a pullable repository that lacks the blob: no mount either.
        for params in ({"mount": secret_layer}, {"mount": secret_layer, "from": "esc/app"}):
            other = client.post("/v2/esc/mine/blobs/uploads/", params=params,
                                headers=bearer(token))  # fmt: skip
            assert other.status_code == 202, other.text
        # Knowing the digest never reveals the blob through a repository the caller can pull.
        for repo in ("esc/mine", "esc/app"):
            for method in ("HEAD", "GET"):
                response = client.request(method, f"/v2/{repo}/blobs/{secret_layer}",
                                          headers=bearer(token))  # fmt: skip
                assert response.status_code == 404, (method, repo, response.status_code)
                assert secret_layer not in response.headers.get("Docker-Content-Digest", "")
                if method == "GET":
                    assert world.secret.layer not in response.content
        # The control: a mount from a repository the caller can pull does work.
        control = client.post("/v2/esc/mine/blobs/uploads/",
                              params={"mount": world.app.layer_digest, "from": "esc/app"},
                              headers=bearer(token))  # fmt: skip
        assert control.status_code == 201, control.text
    assert authn.admin_status("HEAD", f"/v2/esc/mine/blobs/{secret_layer}",
                              "repository:esc/mine:pull") == 404  # fmt: skip


def test_a_token_short_of_the_accounts_rights_gets_a_challenge(authn: Lading, world: World) -> None:
    """The account may push, this token only pulls: 401 so the client fetches a new token."""
    token = authn.token(ALICE, PASSWORD, "repository:esc/app:pull")
    with authn.client() as client:
        response = client.post("/v2/esc/app/blobs/uploads/", headers=bearer(token))
    assert response.status_code == 401, response.text
    assert response.json()["errors"][0]["code"] == "UNAUTHORIZED"
    challenge = challenge_params(response.headers["WWW-Authenticate"])
    assert challenge["error"] == "insufficient_scope"
    assert challenge["scope"] == "repository:esc/app:pull,push"
