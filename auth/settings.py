"""Typed configuration for the auth package; every component is built from it."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

Mode = Literal["none", "token", "external"]


class ThrottleSettings(BaseModel):
    """Failed-login throttling, counted per (username, client IP) and per client IP
    (so one address cannot try many usernames)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_failures: int = Field(default=5, ge=1)
    max_failures_per_ip: int = Field(default=50, ge=1)
    window_seconds: int = Field(default=300, ge=1)
    lockout_seconds: int = Field(default=300, ge=1)


class Argon2Settings(BaseModel):
    """argon2id cost; the defaults follow RFC 9106's low-memory profile."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    time_cost: int = Field(default=3, ge=1)
    memory_kib: int = Field(default=65536, ge=8)
    parallelism: int = Field(default=4, ge=1)


class AuthSettings(BaseModel):
    """Everything the auth package needs; strict so typos in config fail loudly."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    mode: Mode = "none"
    realm: str = ""
    service: str = "lading"
    issuer: str = "lading-token-issuer"
    token_ttl_seconds: int = Field(default=300, ge=60)
    refresh_ttl_seconds: int = Field(default=30 * 86400, ge=60)
    leeway_seconds: int = Field(default=30, ge=0, le=300)
    data_dir: Path = Path("data")
    signing_key_path: Path | None = None
    trusted_public_keys: tuple[Path, ...] = ()
    jwks_file: Path | None = None
    public_repositories: tuple[str, ...] = ()
    personal_namespaces: bool = False
    admin_username: str | None = None
    admin_password: SecretStr | None = None
    throttle: ThrottleSettings = ThrottleSettings()
    argon2: Argon2Settings = Argon2Settings()

    @model_validator(mode="after")
    def _check_mode(self) -> AuthSettings:
        if self.mode != "none" and not self.realm:
            raise ValueError("auth.realm is required when auth.mode is not 'none'")
        if self.mode == "external" and not (self.jwks_file or self.trusted_public_keys):
            raise ValueError("external mode needs jwks_file or trusted_public_keys")
        if self.mode == "external" and self.public_repositories:
            # Only Lading's own token issuer reads them; they would silently do nothing.
            raise ValueError(
                "public_repositories has no effect in external mode: anonymous pulls are"
                " for the external token issuer to grant"
            )
        if (self.admin_username is None) != (self.admin_password is None):
            raise ValueError("admin_username and admin_password go together")
        return self

    @property
    def resolved_signing_key_path(self) -> Path:
        """Where the token signing key lives (generated there on first start)."""
        if self.signing_key_path is not None:
            return self.signing_key_path
        return self.data_dir / "auth" / "signing-key.pem"
