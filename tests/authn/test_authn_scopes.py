"""Scopes as a real token-mode server reads them: the challenge of a cross-repository mount,
the `*` action and the deprecated resource class (distribution's scope.md and its access
controller), checked with tokens from the real ``/token`` endpoint or signed with the
server's own key."""

from __future__ import annotations

import httpx
import pytest
from authn_support import (
    ADMIN,
    SERVICE,
    Lading,
    SmallImage,
    bearer,
    challenge_params,
    claims,
    load_server_key,
    repo_access,
    sign,
)

SOURCE, TARGET = "scopes/source", "scopes/target"
USER, USER_PW = "scopes-user", "scopes-user-pw-1"


@pytest.fixture(scope="module")
def source(authn: Lading) -> SmallImage:
    authn.add_user(USER, USER_PW)
    authn.grant("user", USER, "scopes/*", "pull,push")
    token = authn.admin_token(f"repository:{SOURCE}:pull,push")
    return authn.push_small_image(token, SOURCE, "v1", 31)


def _scopes(response: httpx.Response) -> set[str]:
    return set(challenge_params(response.headers["WWW-Authenticate"])["scope"].split(" "))


def test_a_mount_challenge_also_names_pull_on_the_source(authn: Lading, source: SmallImage) -> None:
    """A mount reads the source repository, so its 401 asks for that too (scope.md: a scope
    for each resource the request needs), letting a client that follows the challenge
    get a token that can mount instead of uploading the blob again."""
    mount = {"mount": source.layer_digest, "from": SOURCE}
    wanted = {f"repository:{TARGET}:pull,push", f"repository:{SOURCE}:pull"}
    with authn.client() as client:
        anonymous = client.post(f"/v2/{TARGET}/blobs/uploads/", params=mount)
        assert anonymous.status_code == 401, anonymous.text
        assert _scopes(anonymous) == wanted
        short = authn.token(USER, USER_PW, f"repository:{SOURCE}:pull")
        insufficient = client.post(
            f"/v2/{TARGET}/blobs/uploads/", params=mount, headers=bearer(short)
        )
        assert insufficient.status_code == 401, insufficient.text
        assert challenge_params(insufficient.headers["WWW-Authenticate"])["error"] == (
            "insufficient_scope"
        )
        assert _scopes(insufficient) == wanted
        # Without `from` there is nothing to read: the plain push scope.
        plain = client.post(f"/v2/{TARGET}/blobs/uploads/", params={"mount": source.layer_digest})
        assert _scopes(plain) == {f"repository:{TARGET}:pull,push"}
        # The token the challenge asks for mounts.
        full = authn.token(USER, USER_PW, *sorted(wanted))
        mounted = client.post(f"/v2/{TARGET}/blobs/uploads/", params=mount, headers=bearer(full))
        assert mounted.status_code == 201, mounted.text
        # Pull on the source stays optional: without it the mount becomes an upload.
        push_only = authn.token(USER, USER_PW, f"repository:{TARGET}:pull,push")
        fallback = client.post(
            f"/v2/{TARGET}/blobs/uploads/", params=mount, headers=bearer(push_only)
        )
        assert fallback.status_code == 202, fallback.text


def test_a_wildcard_action_covers_every_action(authn: Lading) -> None:
    """distribution's access controller reads `*` in a token's actions as any action."""
    repo = "scopes/star"
    image = authn.push_small_image(authn.admin_token(f"repository:{repo}:pull,push"),
                                   repo, "v1", 32)  # fmt: skip
    key = load_server_key(authn.server.data_dir)
    star = sign(claims(ADMIN, [repo_access(repo, "*")]), key)
    elsewhere = sign(claims(ADMIN, [repo_access("scopes/other", "*")]), key)
    copy = sign(claims(ADMIN, [repo_access(f"{repo}-copy", "pull", "push"),
                               repo_access(repo, "*")]), key)  # fmt: skip
    with authn.client() as client:
        mounted = client.post(f"/v2/{repo}-copy/blobs/uploads/", headers=bearer(copy),
                              params={"mount": image.layer_digest, "from": repo})  # fmt: skip
        assert mounted.status_code == 201, mounted.text
        path = f"/v2/{repo}/manifests/{image.manifest_digest}"
        refused = client.get(path, headers=bearer(elsewhere))
        assert refused.status_code == 401, refused.text
        assert client.get(path, headers=bearer(star)).status_code == 200
        deleted = client.delete(path, headers=bearer(star))
        assert deleted.status_code == 202, deleted.text
    assert authn.tags(repo) == []


def test_a_plugin_class_scope_is_a_repository_scope(authn: Lading, source: SmallImage) -> None:
    """scope.md: the resource class is ignored; `repository(plugin):x` works as `repository:x`
    (docker asks for it when pushing and pulling plugins)."""
    response = httpx.get(authn.realm, params=[
        ("service", SERVICE), ("scope", f"repository(plugin):{SOURCE}:pull"),
    ], auth=(USER, USER_PW), timeout=60.0)  # fmt: skip
    assert response.status_code == 200, response.text
    token = response.json()["token"]
    with authn.client() as client:
        got = client.get(f"/v2/{SOURCE}/blobs/{source.layer_digest}", headers=bearer(token))
        assert got.status_code == 200, got.text
        assert got.content == source.layer


ROUTES = [
    ("GET", "/v2/{repo}/manifests/v1", "pull"),
    ("HEAD", "/v2/{repo}/manifests/v1", "pull"),
    ("PUT", "/v2/{repo}/manifests/v2", "pull,push"),
    ("DELETE", "/v2/{repo}/manifests/{manifest}", "delete"),
    ("GET", "/v2/{repo}/blobs/{layer}", "pull"),
    ("HEAD", "/v2/{repo}/blobs/{layer}", "pull"),
    ("DELETE", "/v2/{repo}/blobs/{layer}", "delete"),
    ("POST", "/v2/{repo}/blobs/uploads/", "pull,push"),
    ("GET", "{upload}", "pull"),
    ("PATCH", "{upload}", "pull,push"),
    ("PUT", "{upload}?digest={layer}", "pull,push"),
    ("DELETE", "{upload}", "pull,push"),
    ("GET", "/v2/{repo}/tags/list", "pull"),
    ("GET", "/v2/{repo}/referrers/{manifest}", "pull"),
]


@pytest.mark.parametrize(("method", "template", "actions"), ROUTES)
def test_each_route_challenges_for_its_exact_scope(
    authn: Lading, source: SmallImage, method: str, template: str, actions: str
) -> None:
    """No token: 401 naming exactly the scope the route needs (and no `error`, RFC 6750
    section 3.1); a token for another repository: the same scope with insufficient_scope."""
    with authn.client() as client:
        upload = ""
        if "{upload}" in template:
            admin = authn.admin_token(f"repository:{SOURCE}:pull,push")
            started = client.post(f"/v2/{SOURCE}/blobs/uploads/", headers=bearer(admin))
            assert started.status_code == 202, started.text
            upload = started.headers["Location"]
        path = template.format(repo=SOURCE, manifest=source.manifest_digest,
                               layer=source.layer_digest, upload=upload)  # fmt: skip
        # The admin's account may do anything: a short token is a challenge, never DENIED.
        other = authn.admin_token("repository:scopes/elsewhere:pull,push")
        for headers, error in (({}, None), (bearer(other), "insufficient_scope")):
            response = client.request(method, path, headers=headers)
            assert response.status_code == 401, (method, path, response.text)
            assert response.headers["Docker-Distribution-API-Version"] == "registry/2.0"
            params = challenge_params(response.headers["WWW-Authenticate"])
            assert params["realm"] == authn.realm and params["service"] == SERVICE
            assert params["scope"] == f"repository:{SOURCE}:{actions}"
            assert params.get("error") == error
    assert authn.tags(SOURCE) == ["v1"]
