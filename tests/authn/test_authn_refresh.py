"""Refresh tokens as docker uses them: ``docker login`` gets one from the GET flow
(``offline_token=true``) and stores it as its identity token, then every later token comes
from the OAuth2 POST ``grant_type=refresh_token`` (token.md, oauth.md). Checked against a
real token-mode server, with expiry set in its real database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest
from authn_support import SERVICE, Lading, SmallImage, basic, bearer
from sqlalchemy import create_engine, select, update
from sqlalchemy.orm import Session

from auth.models import RefreshToken, User

REPO = "refresh/app"
FORM = "application/x-www-form-urlencoded"


@pytest.fixture(scope="module")
def image(authn: Lading) -> SmallImage:
    return authn.push_small_image(authn.admin_token(f"repository:{REPO}:pull,push"),
                                  REPO, "v1", 51)  # fmt: skip


def _login(authn: Lading, user: str, password: str, **extra: str) -> httpx.Response:
    params = {"account": user, "client_id": "docker", "service": SERVICE, **extra}
    return httpx.get(authn.realm, params=params, headers=basic(user, password), timeout=60.0)


def _refresh(authn: Lading, refresh: str, **extra: str) -> httpx.Response:
    form = {"grant_type": "refresh_token", "refresh_token": refresh, "client_id": "docker",
            "service": SERVICE, "scope": f"repository:{REPO}:pull", **extra}  # fmt: skip
    return httpx.post(authn.realm, content=str(httpx.QueryParams(form)),
                      headers={"Content-Type": FORM}, timeout=60.0)  # fmt: skip


def _new_user(authn: Lading, name: str) -> str:
    password = f"{name}-pw-1"
    authn.add_user(name, password)
    authn.grant("user", name, "refresh/*", "pull")
    return password


def test_docker_identity_token_flow(authn: Lading, image: SmallImage) -> None:
    password = _new_user(authn, "refresh-user")
    plain = _login(authn, "refresh-user", password)
    assert plain.status_code == 200, plain.text
    assert "refresh_token" not in plain.json()  # only with offline_token=true
    login = _login(authn, "refresh-user", password, offline_token="true")
    assert login.status_code == 200, login.text
    body = login.json()
    assert body["token"] == body["access_token"]
    assert body["expires_in"] >= 60 and body["issued_at"].endswith("Z")
    refresh = body["refresh_token"]
    assert httpx.get(f"{authn.url}/v2/", headers=bearer(body["token"])).status_code == 200

    again = _refresh(authn, refresh)
    assert again.status_code == 200, again.text
    got = again.json()
    assert got["refresh_token"] == refresh  # the same one, never a new one
    assert got["scope"] == f"repository:{REPO}:pull"
    oci = "application/vnd.oci.image.manifest.v1+json"
    manifest = httpx.get(f"{authn.url}/v2/{REPO}/manifests/v1",
                         headers={**bearer(got["access_token"]), "Accept": oci})  # fmt: skip
    assert manifest.status_code == 200 and manifest.content == image.manifest
    # A refresh token is for one service (scope.md): another one is refused.
    assert _refresh(authn, refresh, service="elsewhere").status_code == 400
    # The password grant returns a refresh token only with access_type=offline.
    form = {"grant_type": "password", "username": "refresh-user", "password": password,
            "client_id": "docker", "service": SERVICE}  # fmt: skip
    online = httpx.post(authn.realm, content=str(httpx.QueryParams(form)),
                        headers={"Content-Type": FORM}, timeout=60.0)  # fmt: skip
    assert online.status_code == 200, online.text
    assert "refresh_token" not in online.json() and online.json()["scope"] == ""


def test_expired_and_disabled_refresh_tokens_are_refused(authn: Lading, image: SmallImage) -> None:
    expiring_pw = _new_user(authn, "refresh-expiring")
    disabled_pw = _new_user(authn, "refresh-disabled")
    expiring = _login(authn, "refresh-expiring", expiring_pw, offline_token="true")
    disabled = _login(authn, "refresh-disabled", disabled_pw, offline_token="true")
    expiring_token = expiring.json()["refresh_token"]
    disabled_token = disabled.json()["refresh_token"]
    assert _refresh(authn, expiring_token).status_code == 200
    assert _refresh(authn, disabled_token).status_code == 200

    engine = create_engine(authn.database_url)
    try:
        with Session(engine) as session:
            session.execute(
                update(RefreshToken)
                .where(
                    RefreshToken.user_id
                    == select(User.id).where(User.username == "refresh-expiring").scalar_subquery()
                )
                .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
            )
            session.commit()
    finally:
        engine.dispose()
    authn.cli("user", "disable", "refresh-disabled")
    for token in (expiring_token, disabled_token):
        refused = _refresh(authn, token)
        assert refused.status_code == 401, refused.text
        assert refused.json()["error"] == "invalid_grant"
    # Enabling the account again does not bring a revoked refresh token back.
    authn.cli("user", "disable", "refresh-disabled", "--off")
    assert _refresh(authn, disabled_token).status_code == 401
