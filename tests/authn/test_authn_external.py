"""Under an external token issuer the issuer alone decides who may do what: a token short of
the request's scope gets the 401 challenge (the client asks the issuer again), never a 403
from Lading's own, empty, account tables; and a catalog grant lists the catalog, as in
distribution. Tokens are signed here with the key the server was told to trust."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from authn_support import (
    Lading,
    SmallImage,
    bearer,
    challenge_params,
    claims,
    repo_access,
    sign,
)
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from support.server import start_lading

REPO = "ext/app"
USER = "carol"  # known to the external issuer only


@dataclass(frozen=True)
class External:
    lading: Lading
    key: ec.EllipticCurvePrivateKey
    image: SmallImage

    def token(self, access: list[dict[str, object]]) -> str:
        return sign(claims(USER, access), self.key)


@pytest.fixture(scope="module")
def external(tmp_path_factory: pytest.TempPathFactory) -> Iterator[External]:
    root: Path = tmp_path_factory.mktemp("authn-external")
    key = ec.generate_private_key(ec.SECP256R1())
    pem = root / "issuer.pub.pem"
    pem.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    server = start_lading(
        root,
        env={
            "LADING_AUTH_MODE": "external",
            "LADING_AUTH_REALM": "https://issuer.example/token",
            "LADING_AUTH_TRUSTED_PUBLIC_KEYS": str(pem),
            "LADING_WORKERS": "1",
        },
        ready_statuses=(401,),
    )
    try:
        lading = Lading(server)
        push = sign(claims(USER, [repo_access(REPO, "pull", "push")]), key)
        yield External(lading, key, lading.push_small_image(push, REPO, "v1", 41))
    finally:
        server.stop()


def test_a_token_short_of_the_scope_gets_a_challenge_not_denied(external: External) -> None:
    pull_only = external.token([repo_access(REPO, "pull")])
    with external.lading.client() as client:
        assert client.get(f"/v2/{REPO}/manifests/v1", headers=bearer(pull_only)).status_code == 200
        push = client.post(f"/v2/{REPO}/blobs/uploads/", headers=bearer(pull_only))
        assert push.status_code == 401, push.text
        assert push.json()["errors"][0]["code"] == "UNAUTHORIZED"
        params = challenge_params(push.headers["WWW-Authenticate"])
        assert params["realm"] == "https://issuer.example/token"
        assert params["error"] == "insufficient_scope"
        assert params["scope"] == f"repository:{REPO}:pull,push"
        other = client.get("/v2/ext/other/tags/list", headers=bearer(pull_only))
        assert other.status_code == 401, other.text


def test_a_catalog_grant_lists_the_catalog(external: External) -> None:
    with external.lading.client() as client:
        listing = client.get(
            "/v2/_catalog", headers=bearer(external.token([{"type": "registry",
                                                           "name": "catalog",
                                                           "actions": ["*"]}]))
        )  # fmt: skip
        assert listing.status_code == 200, listing.text
        assert listing.json()["repositories"] == [REPO]
        without = client.get("/v2/_catalog", headers=bearer(external.token([])))
        assert without.status_code == 401, without.text
        assert httpx.get(f"{external.lading.url}/v2/_catalog").status_code == 401
