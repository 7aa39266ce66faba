from __future__ import annotations

import base64
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from auth import accounts
from auth.factory import AuthComponents, build_auth
from auth.scopes import required_access
from auth.service import TokenService, parse_form
from auth.settings import AuthSettings, ThrottleSettings
from auth.throttle import LoginThrottle

Settings = Callable[..., AuthSettings]
SERVICE = "registry.example"


def basic(user: str, pw: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{pw}".encode()).decode()


@pytest.fixture
def auth(make_settings: Settings, session: Session) -> AuthComponents:
    comp = build_auth(
        make_settings(
            public_repositories=("library/*",),
            throttle=ThrottleSettings(max_failures=3, window_seconds=60, lockout_seconds=120),
        )
    )
    accounts.add_user(session, comp.passwords, "alice", "pw")
    accounts.grant(session, "user", "alice", "team/*", "pull,push")
    session.commit()
    return comp


def svc(auth: AuthComponents) -> TokenService:
    assert auth.service is not None
    return auth.service


def access_of(auth: AuthComponents, token: str) -> list[str]:
    assert auth.verifier is not None
    return [str(a) for a in auth.verifier.verify(token).access]


def test_docker_login_get_flow(auth: AuthComponents, session: Session) -> None:
    params = [
        ("account", "alice"),
        ("client_id", "docker"),
        ("offline_token", "true"),
        ("service", SERVICE),
    ]
    resp = svc(auth).handle_get(session, params, basic("alice", "pw"), "10.0.0.1")
    assert resp.status == 200
    body = resp.body
    assert body["token"] == body["access_token"]
    assert body["expires_in"] == 300
    assert str(body["issued_at"]).endswith("Z")
    assert isinstance(body["refresh_token"], str)
    assert access_of(auth, str(body["token"])) == []
    assert resp.headers["Cache-Control"] == "no-store"


def test_get_with_scopes_grants_intersection(auth: AuthComponents, session: Session) -> None:
    params = [
        ("service", SERVICE),
        ("scope", "repository:team/app:pull,push,delete"),
        ("scope", "repository:secret/x:pull"),
        ("scope", "registry:catalog:*"),
    ]
    resp = svc(auth).handle_get(session, params, basic("alice", "pw"), "ip")
    assert resp.status == 200
    assert "refresh_token" not in resp.body
    # The catalog is granted to signed-in users; the registry filters what it lists.
    assert sorted(access_of(auth, str(resp.body["token"]))) == [
        "registry:catalog:*",
        "repository:team/app:pull,push",
    ]


def test_anonymous_gets_public_pull_only(auth: AuthComponents, session: Session) -> None:
    params = [
        ("scope", "repository:library/busybox:pull,push"),
        ("scope", "repository:team/app:pull"),
        ("offline_token", "true"),
    ]
    resp = svc(auth).handle_get(session, params, None, "ip")
    assert resp.status == 200
    assert "refresh_token" not in resp.body
    assert access_of(auth, str(resp.body["token"])) == ["repository:library/busybox:pull"]
    assert auth.verifier is not None
    assert auth.verifier.verify(str(resp.body["token"])).subject == ""


def test_bad_credentials_401(auth: AuthComponents, session: Session) -> None:
    for header in (basic("alice", "nope"), basic("ghost", "pw"), "Basic !!!", "Basic Zm9v"):
        resp = svc(auth).handle_get(session, [("service", SERVICE)], header, f"ip-{header}")
        assert resp.status == 401, header
        assert resp.headers["WWW-Authenticate"].startswith("Basic realm=")
        assert resp.body["errors"] == [
            {"code": "UNAUTHORIZED", "message": resp.body["error_description"]}
        ]


def test_wrong_service_and_bad_scope_400(auth: AuthComponents, session: Session) -> None:
    s = svc(auth)
    assert s.handle_get(session, [("service", "evil")], basic("alice", "pw"), "ip").status == 400
    assert s.handle_get(session, [("scope", "repository:x")], None, "ip").status == 400
    form = [
        ("grant_type", "password"),
        ("service", "evil"),
        ("username", "alice"),
        ("password", "pw"),
    ]
    assert s.handle_post(session, form, "ip").status == 400


def test_plugin_class_scope_is_granted_as_a_plain_repository(
    auth: AuthComponents, session: Session
) -> None:
    """scope.md: the resource class is deprecated and ignored; token servers grant
    `repository(plugin):…` like `repository:…` and return scopes without a class."""
    s = svc(auth)
    params = [("service", SERVICE), ("scope", "repository(plugin):team/app:pull,push")]
    resp = s.handle_get(session, params, basic("alice", "pw"), "ip")
    assert resp.status == 200
    token = str(resp.body["token"])
    assert access_of(auth, token) == ["repository:team/app:pull,push"]
    assert auth.guard.check(f"Bearer {token}", required_access("PUT", "manifest", "team/app"))
    # Still only what the account may do.
    other = [("service", SERVICE), ("scope", "repository(plugin):secret/x:pull")]
    assert access_of(auth, str(s.handle_get(session, other, basic("alice", "pw"), "ip")
                               .body["token"])) == []  # fmt: skip


def test_oauth_error_codes(auth: AuthComponents, session: Session) -> None:
    """RFC 6749 section 5.2 names the error for an unknown grant type and a bad scope."""
    s = svc(auth)
    unknown = s.handle_post(session, [("grant_type", "client_credentials")], "ip")
    assert (unknown.status, unknown.body["error"]) == (400, "unsupported_grant_type")
    missing = s.handle_post(session, [("service", SERVICE)], "ip")
    assert (missing.status, missing.body["error"]) == (400, "invalid_request")
    form = [("grant_type", "password"), ("username", "alice"), ("password", "pw"),
            ("scope", "repository:team/app")]  # fmt: skip
    bad_scope = s.handle_post(session, form, "ip")
    assert (bad_scope.status, bad_scope.body["error"]) == (400, "invalid_scope")
    got = s.handle_get(session, [("scope", "repository::pull")], None, "ip")
    assert (got.status, got.body["error"]) == (400, "invalid_scope")


def test_post_password_then_refresh(auth: AuthComponents, session: Session) -> None:
    s = svc(auth)
    body = (
        b"grant_type=password&username=alice&password=pw&client_id=containerd"
        b"&service=registry.example&access_type=offline"
        b"&scope=repository%3Ateam%2Fapp%3Apull+repository%3Aother%2Fx%3Apull"
    )
    resp = s.handle_post(session, parse_form(body), "ip")
    assert resp.status == 200, resp.body
    assert resp.body["scope"] == "repository:team/app:pull"
    refresh = str(resp.body["refresh_token"])
    session.commit()

    form = [
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh),
        ("client_id", "c"),
        ("service", SERVICE),
        ("scope", "repository:team/app:pull,push"),
    ]
    resp2 = s.handle_post(session, form, "ip")
    assert resp2.status == 200
    assert resp2.body["refresh_token"] == refresh
    assert access_of(auth, str(resp2.body["access_token"])) == ["repository:team/app:pull,push"]

    # A password change revokes refresh tokens.
    accounts.set_password(session, auth.passwords, "alice", "new")
    assert s.handle_post(session, form, "ip").status == 401
    bogus = [("grant_type", "refresh_token"), ("refresh_token", "nope"), ("service", SERVICE)]
    assert s.handle_post(session, bogus, "ip").status == 401


def test_post_errors(auth: AuthComponents, session: Session) -> None:
    s = svc(auth)
    assert s.handle_post(session, [("grant_type", "client_credentials")], "ip").status == 400
    assert s.handle_post(session, [("grant_type", "password")], "ip").status == 400
    assert s.handle_post(session, [("grant_type", "refresh_token")], "ip").status == 400
    bad = [("grant_type", "password"), ("username", "alice"), ("password", "x")]
    refused = s.handle_post(session, bad, "ip")
    # 401 as distribution's token server, not RFC 6749's 400 (see InvalidCredentials), and
    # both bodies: OAuth2's `error` and the registry `errors` list that docker reads.
    assert refused.status == 401
    assert refused.headers["WWW-Authenticate"].startswith("Basic realm=")
    assert refused.body["error"] == "invalid_grant"
    assert refused.body["errors"] == [
        {"code": "UNAUTHORIZED", "message": "incorrect username or password"}
    ]
    with pytest.raises(ValueError):
        parse_form(b"x" * (64 * 1024 + 1))


def test_throttling_locks_and_recovers(auth: AuthComponents, session: Session) -> None:
    now = [datetime(2030, 1, 1, tzinfo=UTC)]
    assert auth.issuer is not None
    s = TokenService(
        auth.settings,
        auth.issuer,
        auth.passwords,
        auth.policy,
        auth.throttle,
        clock=lambda: now[0],
    )
    statuses = [
        s.handle_get(session, [], basic("alice", "bad"), "1.2.3.4").status for _ in range(4)
    ]
    assert statuses == [401, 401, 401, 429]
    locked = s.handle_get(session, [], basic("alice", "pw"), "1.2.3.4")
    assert locked.status == 429 and locked.headers["Retry-After"] == "120"
    # Another client IP is unaffected; the lock lifts after the lockout.
    assert s.handle_get(session, [], basic("alice", "pw"), "5.6.7.8").status == 200
    now[0] += timedelta(seconds=121)
    assert s.handle_get(session, [], basic("alice", "pw"), "1.2.3.4").status == 200


def test_throttle_window_resets(session: Session) -> None:
    t = LoginThrottle(ThrottleSettings(max_failures=2, window_seconds=10, lockout_seconds=30))
    start = datetime(2030, 1, 1, tzinfo=UTC)
    assert t.record_failure(session, "Bob", "ip", start) is None
    assert t.record_failure(session, "bob", "ip", start + timedelta(seconds=11)) is None
    assert t.record_failure(session, "bob", "ip", start + timedelta(seconds=12)) == 30
    assert t.retry_after(session, "BOB", "ip", start + timedelta(seconds=22)) == 20
    t.reset(session, "bob", "ip")
    assert t.retry_after(session, "bob", "ip", start + timedelta(seconds=22)) is None


def test_throttle_per_ip_across_usernames(session: Session) -> None:
    t = LoginThrottle(
        ThrottleSettings(
            max_failures=5, max_failures_per_ip=4, window_seconds=60, lockout_seconds=30
        )
    )
    now = datetime(2030, 1, 1, tzinfo=UTC)
    # One failure each for many usernames never locks a pair, but does lock the IP.
    assert [t.record_failure(session, f"user{i}", "9.9.9.9", now) for i in range(4)] == [
        None, None, None, 30,
    ]  # fmt: skip
    assert t.retry_after(session, "someone-else", "9.9.9.9", now) == 30
    assert t.retry_after(session, "user0", "8.8.8.8", now) is None
    # A success of one user does not reopen the address.
    t.reset(session, "user0", "9.9.9.9")
    assert t.retry_after(session, "user0", "9.9.9.9", now + timedelta(seconds=10)) == 20
    assert t.retry_after(session, "user0", "9.9.9.9", now + timedelta(seconds=31)) is None


def test_guard(auth: AuthComponents, session: Session) -> None:
    s = svc(auth)
    params = [("scope", "repository:team/app:pull")]
    token = str(s.handle_get(session, params, basic("alice", "pw"), "ip").body["token"])
    g = auth.guard
    pull = required_access("GET", "manifest", "team/app")
    push = required_access("PUT", "manifest", "team/app")
    assert g.check(f"Bearer {token}", pull).allowed
    assert g.check(f"Bearer {token}", required_access("GET", "base")).subject == "alice"
    denied = g.check(f"Bearer {token}", push)
    assert not denied.allowed and denied.error == "insufficient_scope"
    assert denied.www_authenticate == (
        'Bearer realm="https://registry.example/token",service="registry.example",'
        'scope="repository:team/app:pull,push",error="insufficient_scope"'
    )
    missing = g.check(None, pull)
    assert not missing.allowed and missing.error is None
    assert 'scope="repository:team/app:pull"' in (missing.www_authenticate or "")
    bad = g.check("Bearer x.y.z", pull)
    assert bad.error == "invalid_token" and 'error="invalid_token"' in (bad.www_authenticate or "")
    assert not g.check(basic("alice", "pw"), pull).allowed


def test_mode_none_allows_everything(make_settings: Settings) -> None:
    comp = build_auth(make_settings(mode="none", realm=""))
    assert comp.service is None and comp.verifier is None
    assert comp.guard.check(None, required_access("DELETE", "manifest", "a")).allowed


def test_external_mode_verifies_with_configured_keys_only(
    make_settings: Settings, tmp_path: Path
) -> None:
    issuer_side = build_auth(make_settings(data_dir=tmp_path / "issuer"))
    assert issuer_side.signing_key is not None and issuer_side.issuer is not None
    pem = tmp_path / "issuer.pub.pem"
    pem.write_bytes(
        issuer_side.signing_key.private_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    ext = build_auth(
        make_settings(mode="external", trusted_public_keys=(pem,), data_dir=tmp_path / "reg")
    )
    assert ext.service is None and ext.verifier is not None
    token = issuer_side.issuer.issue("alice", required_access("GET", "blob", "a/b")).token
    assert ext.guard.check(f"Bearer {token}", required_access("GET", "blob", "a/b")).allowed
    assert not (tmp_path / "reg" / "auth").exists()  # no key generated in external mode
    # The guard never consults public patterns (only Lading's /token issuer does): an
    # anonymous pull gets the challenge, so configuring them here is refused, not ignored.
    assert not ext.guard.check(None, required_access("GET", "blob", "a/b")).allowed
    with pytest.raises(ValueError, match="public_repositories has no effect"):
        make_settings(mode="external", trusted_public_keys=(pem,), public_repositories=("a/*",))


def test_throttle_concurrent_first_failure(engine: Engine) -> None:
    t = LoginThrottle(ThrottleSettings(max_failures=2, window_seconds=60, lockout_seconds=30))
    now = datetime(2030, 1, 1, tzinfo=UTC)
    with sessionmaker(engine)() as other:
        t.record_failure(other, "bob", "ip", now)
        other.commit()
    with sessionmaker(engine)() as mine:
        real_get = mine.get
        calls = []

        def stale_get(*args: Any, **kwargs: Any) -> Any:
            # The first lookup misses, as if the other replica had not committed yet.
            calls.append(1)
            return None if len(calls) == 1 else real_get(*args, **kwargs)

        mine.get = stale_get  # type: ignore[method-assign]
        assert t.record_failure(mine, "bob", "ip", now) == 30
        mine.commit()
        assert t.retry_after(mine, "bob", "ip", now) == 30
