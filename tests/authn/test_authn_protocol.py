"""Token auth over HTTP: challenges, the OAuth2 POST flow, rejected tokens, throttling,
public repositories and the catalog, against a real ``lading serve`` in token mode."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest
from authn_support import (
    ADMIN,
    ADMIN_PASSWORD,
    API_VERSION,
    SERVICE,
    Lading,
    SmallImage,
    basic,
    bearer,
    challenge_params,
    claims,
    hs256_with_public_key,
    load_server_key,
    repo_access,
    sign,
    unsigned,
)
from cryptography.hazmat.primitives.asymmetric import ec

from auth.keys import libtrust_kid

FORM = "application/x-www-form-urlencoded; charset=utf-8"
REPO = "proto/app"
USER, USER_PW = "proto-user", "proto-user-pw-1"


@pytest.fixture(scope="module")
def proto(authn: Lading) -> SmallImage:
    authn.add_user(USER, USER_PW)
    authn.grant("user", USER, "proto/*", "pull,push")
    return authn.push_small_image(authn.admin_token(f"repository:{REPO}:pull,push"), REPO, "v1", 1)


# -- item 4: challenges ---------------------------------------------------------------------


def test_base_without_credentials_is_a_bearer_challenge(authn: Lading) -> None:
    response = httpx.get(f"{authn.url}/v2/")
    assert response.status_code == 401
    assert response.headers["Docker-Distribution-API-Version"] == API_VERSION
    params = challenge_params(response.headers["WWW-Authenticate"])
    assert params["realm"] == authn.realm
    assert params["service"] == SERVICE
    assert "error" not in params


def test_base_with_an_empty_access_token_is_200(authn: Lading) -> None:
    token = authn.token(ADMIN, ADMIN_PASSWORD)  # no scope: empty access
    response = httpx.get(f"{authn.url}/v2/", headers=bearer(token))
    assert response.status_code == 200
    assert response.headers["Docker-Distribution-API-Version"] == API_VERSION
    anonymous = authn.token(None, None)
    assert httpx.get(f"{authn.url}/v2/", headers=bearer(anonymous)).status_code == 200


def test_insufficient_scope_names_the_needed_scope(authn: Lading, proto: SmallImage) -> None:
    token = authn.token(USER, USER_PW, "repository:proto/other:pull")
    response = httpx.get(f"{authn.url}/v2/{REPO}/manifests/v1", headers=bearer(token))
    assert response.status_code == 401
    assert response.json()["errors"][0]["code"] == "UNAUTHORIZED"
    params = challenge_params(response.headers["WWW-Authenticate"])
    assert params["error"] == "insufficient_scope"
    assert params["scope"] == f"repository:{REPO}:pull"
    assert params["realm"] == authn.realm and params["service"] == SERVICE
    # A push needs pull and push: the challenge asks for both.
    response = httpx.post(f"{authn.url}/v2/{REPO}/blobs/uploads/", headers=bearer(token))
    assert response.status_code == 401
    assert challenge_params(response.headers["WWW-Authenticate"])["scope"] == (
        f"repository:{REPO}:pull,push"
    )


# -- item 3: the containerd/buildkit POST flow ---------------------------------------------


def _post(authn: Lading, form: dict[str, str]) -> httpx.Response:
    return httpx.post(authn.realm, content=httpx.QueryParams(form).__str__(),
                      headers={"Content-Type": FORM}, timeout=60.0)  # fmt: skip


def test_oauth_password_then_refresh_token(authn: Lading, proto: SmallImage) -> None:
    scope = f"repository:{REPO}:pull repository:proto/new:pull,push"
    first = _post(authn, {
        "grant_type": "password", "username": USER, "password": USER_PW,
        "client_id": "containerd-test", "service": SERVICE, "scope": scope,
        "access_type": "offline",
    })  # fmt: skip
    assert first.status_code == 200, first.text
    body = first.json()
    for field in ("access_token", "expires_in", "issued_at", "refresh_token"):
        assert field in body, body
    assert body["expires_in"] >= 60
    assert set(body["scope"].split(" ")) == set(scope.split(" "))
    manifest = httpx.get(
        f"{authn.url}/v2/{REPO}/manifests/v1",
        headers={**bearer(body["access_token"]), "Accept": proto_media()},
    )
    assert manifest.status_code == 200
    assert manifest.content == proto.manifest

    second = _post(authn, {
        "grant_type": "refresh_token", "refresh_token": body["refresh_token"],
        "client_id": "containerd-test", "service": SERVICE,
        "scope": "repository:proto/new:pull,push", "access_type": "offline",
    })  # fmt: skip
    assert second.status_code == 200, second.text
    refreshed = second.json()
    assert refreshed["refresh_token"] == body["refresh_token"]
    assert refreshed["access_token"] != body["access_token"]
    pushed = authn.push_small_image(refreshed["access_token"], "proto/new", "r1", 2)
    assert authn.tags("proto/new") == ["r1"]
    assert pushed.tag == "r1"
    # The refreshed token carries only what was asked for this time.
    response = httpx.get(f"{authn.url}/v2/{REPO}/manifests/v1",
                         headers=bearer(refreshed["access_token"]))  # fmt: skip
    assert response.status_code == 401


def test_oauth_errors_are_not_415_or_422(authn: Lading) -> None:
    wrong = _post(authn, {"grant_type": "password", "username": USER, "password": "nope-nope",
                          "client_id": "c", "service": SERVICE})  # fmt: skip
    assert wrong.status_code == 401
    bad_refresh = _post(authn, {"grant_type": "refresh_token", "refresh_token": "forged",
                                "client_id": "c", "service": SERVICE})  # fmt: skip
    assert bad_refresh.status_code == 401
    other_service = _post(authn, {"grant_type": "password", "username": USER,
                                  "password": USER_PW, "service": "elsewhere"})  # fmt: skip
    assert other_service.status_code == 400


# -- item 5: rejected tokens ----------------------------------------------------------------


def _bad_tokens(data_dir: Path) -> dict[str, str]:
    key = load_server_key(data_dir)
    kid = libtrust_kid(key.public_key())
    access = [repo_access(REPO, "pull", "push", "delete")]
    now = int(time.time())
    other = ec.generate_private_key(ec.SECP256R1())
    valid = sign(claims(ADMIN, access), key)
    head, payload, sig = valid.split(".")
    flipped = sig[:-4] + ("AAAA" if sig[-4:] != "AAAA" else "BBBB")
    tokens = {
        "expired": sign(claims(ADMIN, access, exp=now - 3600, nbf=now - 7200, iat=now - 7200),
                        key),
        "not yet valid": sign(claims(ADMIN, access, nbf=now + 3600, iat=now + 3600,
                                     exp=now + 7200), key),
        "tampered signature": f"{head}.{payload}.{flipped}",
        "alg none": unsigned(claims(ADMIN, access), kid),
        "HS256 with the public key": hs256_with_public_key(claims(ADMIN, access), key),
        "wrong audience": sign(claims(ADMIN, access, aud="another-registry"), key),
        "wrong issuer": sign(claims(ADMIN, access, iss="evil-issuer"), key),
        "no exp": sign(claims(ADMIN, access, exp=None), key),
        "signed by another key": sign(claims(ADMIN, access), other),
        "another key claiming our kid": sign(claims(ADMIN, access), other, kid=kid),
        "unknown kid": sign(claims(ADMIN, access), key, kid="AAAA:BBBB:CCCC"),
    }  # fmt: skip
    assert sorted(tokens) == sorted(BAD_KINDS)
    return tokens


def test_a_crafted_valid_token_is_accepted(authn: Lading, proto: SmallImage) -> None:
    """The control: the crafting itself is right, so the refusals below mean something."""
    token = sign(claims(ADMIN, [repo_access(REPO, "pull")]), load_server_key(authn.server.data_dir))
    response = httpx.get(f"{authn.url}/v2/{REPO}/manifests/v1", headers=bearer(token))
    assert response.status_code == 200
    assert response.headers["Docker-Content-Digest"] == proto.manifest_digest


BAD_KINDS = [
    "expired",
    "not yet valid",
    "tampered signature",
    "alg none",
    "HS256 with the public key",
    "wrong audience",
    "wrong issuer",
    "no exp",
    "signed by another key",
    "another key claiming our kid",
    "unknown kid",
]


@pytest.mark.parametrize("kind", BAD_KINDS)
def test_rejected_token(authn: Lading, proto: SmallImage, kind: str) -> None:
    token = _bad_tokens(authn.server.data_dir)[kind]
    with authn.client() as client:
        answers = [
            client.get("/v2/", headers=bearer(token)),
            client.get(f"/v2/{REPO}/manifests/v1", headers=bearer(token)),
            client.delete(f"/v2/{REPO}/manifests/{proto.manifest_digest}", headers=bearer(token)),
            client.put(f"/v2/{REPO}/manifests/hijack", content=proto.manifest,
                       headers={**bearer(token), "Content-Type": proto_media()}),
            client.post(f"/v2/{REPO}/blobs/uploads/", headers=bearer(token)),
        ]  # fmt: skip
    for response in answers:
        assert response.status_code == 401, (kind, response.request.method, response.text)
        params = challenge_params(response.headers["WWW-Authenticate"])
        assert params["error"] == "invalid_token", (kind, params)
    assert authn.tags(REPO) == ["v1"]
    assert (
        authn.admin_status(
            "HEAD", f"/v2/{REPO}/manifests/{proto.manifest_digest}", f"repository:{REPO}:pull"
        )
        == 200
    )


def proto_media() -> str:
    return "application/vnd.oci.image.manifest.v1+json"


# -- item 7: throttling, public repositories, catalog -------------------------------------


def test_repeated_failed_logins_are_throttled(authn: Lading) -> None:
    name, password = "throttled-user", "throttled-pw-1"
    authn.add_user(name, password)
    statuses = []
    for _ in range(6):
        response = httpx.get(authn.realm, params={"service": SERVICE},
                             headers=basic(name, "wrong-password"), timeout=60.0)  # fmt: skip
        statuses.append(response.status_code)
        if response.status_code == 429:
            break
    assert statuses[0] == 401
    assert statuses[-1] == 429, statuses
    assert int(response.headers["Retry-After"]) > 0
    # Locked: even the right password waits (no oracle while locked).
    right = httpx.get(authn.realm, params={"service": SERVICE}, headers=basic(name, password))
    assert right.status_code == 429
    assert int(right.headers["Retry-After"]) > 0
    # The OAuth2 POST flow shares the lock.
    posted = _post(authn, {"grant_type": "password", "username": name, "password": password,
                           "service": SERVICE, "client_id": "c"})  # fmt: skip
    assert posted.status_code == 429
    # Another account from the same address is not affected.
    assert authn.token(USER, USER_PW)


def test_public_repositories_allow_anonymous_pull_only(authn: Lading) -> None:
    image = authn.push_small_image(authn.admin_token("repository:pub/tool:pull,push"),
                                   "pub/tool", "v1", 3)  # fmt: skip
    private = authn.push_small_image(authn.admin_token("repository:priv/tool:pull,push"),
                                     "priv/tool", "v1", 4)  # fmt: skip
    anon = httpx.get(authn.realm, params=[
        ("service", SERVICE), ("scope", "repository:pub/tool:pull,push,delete"),
        ("scope", "repository:priv/tool:pull"), ("scope", "registry:catalog:*"),
    ]).json()  # fmt: skip
    token = anon["token"]
    with authn.client() as client:
        got = client.get("/v2/pub/tool/manifests/v1",
                         headers={**bearer(token), "Accept": proto_media()})  # fmt: skip
        assert got.status_code == 200 and got.content == image.manifest
        blob = client.get(f"/v2/pub/tool/blobs/{image.layer_digest}", headers=bearer(token))
        assert blob.status_code == 200 and blob.content == image.layer
        refused = [
            client.post("/v2/pub/tool/blobs/uploads/", headers=bearer(token)),
            client.put("/v2/pub/tool/manifests/evil", content=image.manifest,
                       headers={**bearer(token), "Content-Type": proto_media()}),
            client.delete(f"/v2/pub/tool/manifests/{image.manifest_digest}",
                          headers=bearer(token)),
            client.get("/v2/priv/tool/manifests/v1", headers=bearer(token)),
            client.get(f"/v2/priv/tool/blobs/{private.layer_digest}", headers=bearer(token)),
            client.get("/v2/_catalog", headers=bearer(token)),
        ]  # fmt: skip
    for response in refused:
        assert response.status_code == 401, (response.request.url, response.text)
    assert authn.tags("pub/tool") == ["v1"]
    # Without any token at all the public pull still needs the token dance (401 challenge).
    assert httpx.get(f"{authn.url}/v2/pub/tool/manifests/v1").status_code == 401


def test_catalog_lists_only_what_the_caller_may_pull(authn: Lading, proto: SmallImage) -> None:
    anonymous = httpx.get(f"{authn.url}/v2/_catalog")
    assert anonymous.status_code == 401
    assert challenge_params(anonymous.headers["WWW-Authenticate"])["scope"] == "registry:catalog:*"
    admin = authn.admin_token("registry:catalog:*")
    everything = httpx.get(f"{authn.url}/v2/_catalog", headers=bearer(admin))
    assert everything.status_code == 200, everything.text
    all_repos = everything.json()["repositories"]
    assert REPO in all_repos, all_repos
    user_token = authn.token(USER, USER_PW, "registry:catalog:*")
    response = httpx.get(f"{authn.url}/v2/_catalog", headers=bearer(user_token))
    assert response.status_code == 200, response.text
    visible = response.json()["repositories"]
    assert set(visible) <= set(all_repos)
    assert len(visible) < len(all_repos), "a user without rights everywhere sees less"
    for name in visible:  # everything shown is pullable by that user
        pull = authn.token(USER, USER_PW, f"repository:{name}:pull")
        shown = httpx.get(f"{authn.url}/v2/{name}/tags/list", headers=bearer(pull))
        assert shown.status_code == 200, (name, shown.text)


def test_robot_secret_only_logs_in_as_its_robot(authn: Lading, proto: SmallImage) -> None:
    secret = authn.robot(ADMIN, "proto-bot", "proto/*:pull")
    scopes = [("service", SERVICE), ("scope", f"repository:{REPO}:pull,push"),
              ("scope", "registry:catalog:*")]  # fmt: skip
    for login in (f"{ADMIN}+proto-bot", ADMIN):
        response = httpx.get(authn.realm, params=scopes, headers=basic(login, secret))
        assert response.status_code == 200, (login, response.text)
        token = response.json()["token"]
        with authn.client() as client:
            got = client.get(f"/v2/{REPO}/manifests/v1", headers=bearer(token))
            assert got.status_code == 200
            # The owner is an admin, but the robot's scope is pull only and never the catalog.
            assert (
                client.post(f"/v2/{REPO}/blobs/uploads/", headers=bearer(token)).status_code == 401
            )
            assert client.get("/v2/_catalog", headers=bearer(token)).status_code == 401
    for login in (USER, f"{USER}+proto-bot", f"{ADMIN}+other-bot"):
        response = httpx.get(authn.realm, params=scopes, headers=basic(login, secret))
        assert response.status_code == 401, (login, response.text)
