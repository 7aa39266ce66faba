"""Build every auth component from an `AuthSettings` (no module-level state)."""

from __future__ import annotations

from dataclasses import dataclass

from auth.guard import RequestGuard
from auth.keys import KeyRing, SigningKey, keyring_from_settings, load_or_create_signing_key
from auth.passwords import Passwords
from auth.policy import Policy
from auth.service import TokenService
from auth.settings import AuthSettings
from auth.throttle import LoginThrottle
from auth.tokens import TokenIssuer, TokenVerifier


@dataclass(frozen=True)
class AuthComponents:
    settings: AuthSettings
    passwords: Passwords
    policy: Policy
    throttle: LoginThrottle
    guard: RequestGuard
    signing_key: SigningKey | None  # None unless mode == "token"
    keyring: KeyRing | None
    issuer: TokenIssuer | None
    verifier: TokenVerifier | None
    service: TokenService | None  # the /token endpoint; None unless mode == "token"


def build_auth(settings: AuthSettings) -> AuthComponents:
    """Load (or create, in token mode) keys and wire the components together."""
    passwords = Passwords(settings.argon2)
    policy = Policy(settings)
    throttle = LoginThrottle(settings.throttle)
    signing: SigningKey | None = None
    keyring: KeyRing | None = None
    issuer: TokenIssuer | None = None
    verifier: TokenVerifier | None = None
    service: TokenService | None = None
    if settings.mode == "token":
        signing = load_or_create_signing_key(settings.resolved_signing_key_path)
        issuer = TokenIssuer(signing, settings.issuer, settings.service, settings.token_ttl_seconds)
        service = TokenService(settings, issuer, passwords, policy, throttle)
    if settings.mode != "none":
        keyring = keyring_from_settings(settings, signing)
        verifier = TokenVerifier(
            keyring, settings.issuer, settings.service, settings.leeway_seconds
        )
    guard = RequestGuard(settings, verifier)
    return AuthComponents(
        settings, passwords, policy, throttle, guard, signing, keyring, issuer, verifier, service
    )
