"""Settings: defaults, then a YAML file, then ``LADING_*`` environment variables."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

ENV_PREFIX = "LADING_"
_MiB = 1024 * 1024
# S3's bounds for a part that is not the last one.
_S3_PART_SIZE_RANGE = (5 * _MiB, 5 * 1024 * _MiB)
# The admin token is a password nobody types: 32 characters (128 bits as hex) put
# guessing out of reach even without the throttle; fewer than 8 different characters
# ("aaaa...", "abab...") is a placeholder, not a secret.
_ADMIN_TOKEN_MIN_LENGTH = 32
_ADMIN_TOKEN_MIN_DISTINCT = 8
_ADMIN_TOKEN_HINT = "generate one with `openssl rand -hex 32`"  # noqa: S105 (advice)


class SettingsError(Exception):
    """Configuration is unreadable or invalid; the message says which setting."""


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = "127.0.0.1"
    port: int = Field(5000, ge=0, le=65535)
    # One process by default: it serves SQLite reads on its event loop and stays
    # near 100 MiB; each extra worker adds read throughput and ~100 MiB. 0 = per CPU.
    workers: int = Field(1, ge=0, le=64)
    data_dir: Path = Path("data")
    # boto's loggers stay at warning or above: their debug lines hold S3 request signatures.
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    # "json": one JSON object per line with the request id (the container image's default).
    log_format: Literal["text", "json"] = "text"
    # One structured line per request (logger lading.access).
    access_log: bool = False
    # Seconds uvicorn waits for in-flight requests (e.g. uploads) on SIGTERM.
    shutdown_timeout: float = Field(30.0, ge=0)
    # Default: SQLite in the data dir.
    database_url: str | None = None
    # `lading serve` upgrades the schema first; off: it refuses a schema that is behind.
    migrate_on_start: bool = True

    storage: Literal["filesystem", "s3"] = "filesystem"
    # Default: <data_dir>/storage.
    storage_root: Path | None = None
    s3_bucket: str | None = None
    s3_endpoint_url: str | None = None
    s3_region: str = "us-east-1"
    s3_prefix: str = ""
    s3_path_style: bool = True
    s3_access_key: str | None = None
    s3_secret_key: str | None = None
    s3_redirect: bool = False
    # Bytes per multipart part (every part but the last has this size, as R2 requires)
    # and per ranged read; the largest blob is s3_max_parts parts. 5 MiB..5 GiB.
    s3_part_size: int = 8 * _MiB
    # Parts (or read ranges) one request transfers at once; memory per request is
    # about (s3_max_concurrency + 1) * s3_part_size.
    s3_max_concurrency: int = Field(4, ge=1, le=64)
    # Most parts one multipart upload may have: S3's 10,000, fewer for stores with a
    # lower limit (Scaleway: 1,000). Larger blobs answer 413.
    s3_max_parts: int = Field(10_000, ge=1, le=10_000)
    # Seconds to wait for CompleteMultipartUpload: stores that assemble the object before
    # answering (rclone writes it to disk, about 6 s per GiB here) outlast the 60 s read timeout.
    s3_complete_timeout: float = Field(600.0, gt=0)

    # Larger manifests answer 413.
    max_manifest_bytes: int = Field(4 * 1024 * 1024, ge=1024)
    # Largest n of tag and catalog listings (more: 400 PAGINATION_NUMBER_INVALID), and the
    # page size when n is absent.
    page_size_max: int = Field(10000, ge=1)
    # Upload sessions idle this long are aborted by GC.
    upload_purge_after_hours: float = Field(24.0, gt=0)
    # Online GC: seconds between background passes per process (0 = off).
    gc_interval_seconds: float = Field(300.0, ge=0)
    # Grace period in seconds before an unreferenced object may be collected.
    gc_review_delay: float = Field(86400.0, ge=0)
    # Reviews per GC transaction (1 = shortest locks; more = faster backlog).
    gc_batch_size: int = Field(500, ge=1, le=1000)
    # Bearer token the admin API (/admin/v1/) accepts in every auth mode; with auth_mode
    # none it is then required (unset: the admin API is open, like the registry). At least
    # 32 printable ASCII characters, e.g. `openssl rand -hex 32`; wrong tokens count as
    # failed logins of the client address (auth_throttle_*).
    admin_token: str | None = None

    # Authentication: "none" (open registry), "token" (built-in token service at /token)
    # or "external" (trust tokens of another issuer).
    auth_mode: Literal["none", "token", "external"] = "none"
    # Token endpoint URL given to clients; default http://<host>:<port>/token.
    auth_realm: str | None = None
    auth_service: str = "lading"
    auth_issuer: str = "lading-token-issuer"
    auth_token_ttl_seconds: int = Field(300, ge=60)
    # Default: <data_dir>/auth/signing-key.pem, generated on first start.
    auth_signing_key_path: Path | None = None
    # Comma-separated PEM files of further trusted public keys (rotation, external issuer).
    auth_trusted_public_keys: str = ""
    auth_jwks_file: Path | None = None
    # Comma-separated repository patterns anyone may pull (e.g. "public/*").
    auth_public_repositories: str = ""
    # Users may do anything under <username>/.
    auth_personal_namespaces: bool = False
    # First admin account, created at start when it does not exist.
    auth_admin_username: str | None = None
    auth_admin_password: SecretStr | None = None
    auth_refresh_ttl_seconds: int = Field(30 * 86400, ge=60)
    # Failed logins: a (username, IP) pair, or an IP over all usernames, is locked
    # for the lockout after this many failures within the window.
    auth_throttle_max_failures: int = Field(5, ge=1)
    auth_throttle_max_failures_per_ip: int = Field(50, ge=1)
    auth_throttle_window_seconds: int = Field(300, ge=1)
    auth_throttle_lockout_seconds: int = Field(300, ge=1)
    # argon2id password hashing cost (RFC 9106 low-memory profile by default).
    auth_argon2_time_cost: int = Field(3, ge=1)
    auth_argon2_memory_kib: int = Field(65536, ge=8)
    auth_argon2_parallelism: int = Field(4, ge=1)

    @field_validator("s3_part_size")
    @classmethod
    def _check_s3_part_size(cls, value: int) -> int:
        low, high = _S3_PART_SIZE_RANGE
        if not low <= value <= high:
            raise ValueError(f"must be between 5 MiB and 5 GiB ({low}..{high} bytes), not {value}")
        return value

    @field_validator("admin_token")
    @classmethod
    def _check_admin_token(cls, value: str | None) -> str | None:
        # The messages never quote the value: it may be a real secret, only a weak one.
        if not value:
            return None  # LADING_ADMIN_TOKEN= (empty) leaves the token unset
        if not re.fullmatch(r"[\x21-\x7e]+", value):
            raise ValueError(
                "the admin token must be printable ASCII without spaces (it travels in an"
                f" HTTP header); {_ADMIN_TOKEN_HINT}"
            )
        if len(value) < _ADMIN_TOKEN_MIN_LENGTH:
            raise ValueError(
                "the admin token is too short to be a secret: use at least"
                f" {_ADMIN_TOKEN_MIN_LENGTH} characters; {_ADMIN_TOKEN_HINT}"
            )
        if len(set(value)) < _ADMIN_TOKEN_MIN_DISTINCT:
            raise ValueError(
                f"the admin token is too repetitive to be a secret; {_ADMIN_TOKEN_HINT}"
            )
        return value

    def resolved_auth_realm(self) -> str:
        if self.auth_realm:
            return self.auth_realm
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host
        return f"http://{host}:{self.port}/token"

    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'lading.db').resolve()}"

    def resolved_storage_root(self) -> Path:
        return (self.storage_root or self.data_dir / "storage").resolve()


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}".replace("-", "_")
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{name}_"))
        else:
            flat[name] = value
    return flat


def _from_env(environ: dict[str, str]) -> dict[str, Any]:
    fields = Settings.model_fields
    values: dict[str, Any] = {}
    for key, value in environ.items():
        if key.startswith(ENV_PREFIX):
            name = key[len(ENV_PREFIX) :].lower()
            if name in fields:
                values[name] = value
    return values


def load_settings(
    config_file: str | os.PathLike[str] | None = None,
    overrides: dict[str, Any] | None = None,
    environ: dict[str, str] | None = None,
) -> Settings:
    """Merge file, environment and explicit overrides (highest last)."""
    env = dict(os.environ if environ is None else environ)
    values: dict[str, Any] = {}
    config_file = config_file or env.get(f"{ENV_PREFIX}CONFIG")
    if config_file:
        try:
            loaded = yaml.safe_load(Path(config_file).read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise SettingsError(f"cannot read config file {config_file}: {exc}") from exc
        if not isinstance(loaded, dict):
            raise SettingsError(f"config file {config_file} must hold a mapping")
        values.update(_flatten(loaded))
    values.update(_from_env(env))
    values.update({k: v for k, v in (overrides or {}).items() if v is not None})
    try:
        return Settings.model_validate(values)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise SettingsError(f"invalid settings: {problems}") from exc
