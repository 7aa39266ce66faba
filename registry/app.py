"""Composition root: builds every part from settings; nothing lives in module globals."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from anyio import to_thread
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware

from auth.accounts import ensure_admin
from auth.factory import AuthComponents, build_auth
from auth.keys import KeyFileError
from auth.settings import Argon2Settings, AuthSettings, ThrottleSettings
from registry.db import migrate
from registry.db.engine import Database
from registry.domain.errors import RegistryError
from registry.http.access import AccessController, OpenAccess
from registry.http.admin import admin_routes
from registry.http.errors import (
    http_error_handler,
    registry_error_handler,
    unexpected_error_handler,
)
from registry.http.middleware import RequestContextMiddleware
from registry.http.offload import Offloader
from registry.http.ops import Metrics, OpsRoutes
from registry.http.token_access import TokenAccess
from registry.http.token_routes import TokenRoutes
from registry.http.v2 import V2Router
from registry.http.v2_blobs import BlobRoutes
from registry.http.v2_manifests import ManifestRoutes
from registry.services.blobs import BlobService
from registry.services.gc import GarbageCollector, GcReport, GcWorker
from registry.services.listing import ListingService
from registry.services.manifests import ManifestService
from registry.services.uploads import UploadService
from registry.settings import Settings, SettingsError, load_settings
from storage.driver import Driver, InvalidKey, StorageFull
from storage.filesystem import FilesystemDriver
from storage.keys import check_prefix

log = logging.getLogger("lading")


def build_driver(settings: Settings) -> Driver:
    if settings.storage == "s3":
        from storage.s3 import S3Config, S3Driver

        if not settings.s3_bucket:
            raise SettingsError("storage s3 needs s3_bucket (LADING_S3_BUCKET)")
        if (settings.s3_access_key is None) != (settings.s3_secret_key is None):
            raise SettingsError(
                "give both s3_access_key and s3_secret_key (LADING_S3_ACCESS_KEY,"
                " LADING_S3_SECRET_KEY), or neither for boto3's credential chain"
            )
        try:
            check_prefix(settings.s3_prefix)
        except InvalidKey as exc:
            raise SettingsError(
                f"s3_prefix (LADING_S3_PREFIX) {settings.s3_prefix!r} is not a key prefix:"
                " '/'-separated components of [A-Za-z0-9._-]"
            ) from exc
        driver: Driver = S3Driver(
            S3Config(
                bucket=settings.s3_bucket,
                endpoint_url=settings.s3_endpoint_url,
                region=settings.s3_region,
                prefix=settings.s3_prefix,
                path_style=settings.s3_path_style,
                access_key=settings.s3_access_key,
                secret_key=settings.s3_secret_key,
                redirect=settings.s3_redirect,
                part_size=settings.s3_part_size,
                max_concurrency=settings.s3_max_concurrency,
                max_parts=settings.s3_max_parts,
                complete_timeout=settings.s3_complete_timeout,
            )
        )
        return driver
    return FilesystemDriver(settings.resolved_storage_root())


def build_auth_settings(settings: Settings) -> AuthSettings:
    def paths(value: str) -> tuple[Path, ...]:
        return tuple(Path(p.strip()) for p in value.split(",") if p.strip())

    return AuthSettings(
        mode=settings.auth_mode,
        realm=settings.resolved_auth_realm() if settings.auth_mode != "none" else "",
        service=settings.auth_service,
        issuer=settings.auth_issuer,
        token_ttl_seconds=settings.auth_token_ttl_seconds,
        data_dir=settings.data_dir,
        signing_key_path=settings.auth_signing_key_path,
        trusted_public_keys=paths(settings.auth_trusted_public_keys),
        jwks_file=settings.auth_jwks_file,
        public_repositories=tuple(
            p.strip() for p in settings.auth_public_repositories.split(",") if p.strip()
        ),
        personal_namespaces=settings.auth_personal_namespaces,
        admin_username=settings.auth_admin_username,
        admin_password=settings.auth_admin_password,
        refresh_ttl_seconds=settings.auth_refresh_ttl_seconds,
        throttle=ThrottleSettings(
            max_failures=settings.auth_throttle_max_failures,
            max_failures_per_ip=settings.auth_throttle_max_failures_per_ip,
            window_seconds=settings.auth_throttle_window_seconds,
            lockout_seconds=settings.auth_throttle_lockout_seconds,
        ),
        argon2=Argon2Settings(
            time_cost=settings.auth_argon2_time_cost,
            memory_kib=settings.auth_argon2_memory_kib,
            parallelism=settings.auth_argon2_parallelism,
        ),
    )


def _build_auth(settings: Settings) -> AuthComponents:
    """Auth settings or key files that are unusable are the operator's to fix (SettingsError)."""
    try:
        return build_auth(build_auth_settings(settings))
    except ValidationError as exc:
        problems = "; ".join(str(err["msg"]).removeprefix("Value error, ") for err in exc.errors())
        raise SettingsError(f"invalid auth settings: {problems}") from exc
    except KeyFileError as exc:
        raise SettingsError(f"auth key: {exc}") from exc


@dataclass
class Components:
    settings: Settings
    db: Database
    driver: Driver
    blobs: BlobService
    uploads: UploadService
    manifests: ManifestService
    listing: ListingService
    access: AccessController
    auth: AuthComponents


def build_components(settings: Settings) -> Components:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    db = Database(settings.resolved_database_url())
    driver = build_driver(settings)
    auth = _build_auth(settings)
    # Under an external issuer the local account tables are empty: only the issuer decides.
    policy = auth.policy if settings.auth_mode == "token" else None
    access: AccessController = (
        OpenAccess() if settings.auth_mode == "none" else TokenAccess(auth.guard, policy, db)
    )
    return Components(
        settings=settings,
        db=db,
        driver=driver,
        blobs=BlobService(db, driver),
        uploads=UploadService(db, driver, settings.upload_purge_after_hours * 3600),
        manifests=ManifestService(db, driver, settings.max_manifest_bytes),
        listing=ListingService(db, settings.page_size_max),
        access=access,
        auth=auth,
    )


def prepare(components: Components) -> None:
    """Check storage and bring the schema up to date; fail fast with a clear message."""
    try:
        components.driver.check()
    except StorageFull as exc:
        # A full disk still serves pulls: start, and let pushes answer 507.
        log.warning("%s: pushes will fail until space is freed", exc)
    if components.settings.migrate_on_start:
        migrate.upgrade(components.db)
    elif not migrate.is_up_to_date(components.db):
        raise SettingsError(
            "database schema is not up to date and migrate_on_start is off:"
            " run `lading migrate upgrade`"
        )
    if components.auth.settings.mode == "token":
        with components.db.write() as session:
            if ensure_admin(session, components.auth.passwords, components.auth.settings):
                log.info(
                    "created the first admin account %s", components.auth.settings.admin_username
                )


def start_gc_worker(components: Components, metrics: Metrics | None = None) -> GcWorker | None:
    """Online GC in this process; safe with any number of processes doing the same."""
    settings = components.settings
    if settings.gc_interval_seconds <= 0:
        return None
    collector = GarbageCollector(
        components.db,
        components.driver,
        review_delay=settings.gc_review_delay,
        upload_purge_after=settings.upload_purge_after_hours * 3600,
        batch_size=settings.gc_batch_size,
    )

    def record(report: GcReport | None) -> None:
        if metrics is None:
            return
        if report is None:
            metrics.record_gc_run(ok=False)
        else:
            metrics.record_gc_run(
                bytes_freed=report.bytes_freed,
                blobs_deleted=report.blobs_deleted,
                manifests_deleted=report.manifests_deleted,
            )

    worker = GcWorker(collector, settings.gc_interval_seconds, on_report=record)
    worker.start()
    return worker


def create_app(settings: Settings, *, prepared: bool = False) -> Starlette:
    components = build_components(settings)
    metrics = Metrics.from_environment()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if not prepared:
            await to_thread.run_sync(prepare, components)
        # Blob transfers run in threads; allow plenty of them.
        to_thread.current_default_thread_limiter().total_tokens = 64
        gc_worker = start_gc_worker(components, metrics)
        try:
            yield
        finally:
            if gc_worker is not None:
                await to_thread.run_sync(gc_worker.stop)
            offload.close()
            components.db.dispose()
            metrics.worker_exiting()

    offload = Offloader()
    router = V2Router(
        components.access,
        BlobRoutes(
            components.access,
            components.blobs,
            components.uploads,
            redirect=settings.s3_redirect,
            offload=offload,
        ),
        ManifestRoutes(
            components.access,
            components.manifests,
            components.listing,
            settings.page_size_max,
            offload=offload,
        ),
    )
    app = Starlette(
        routes=[
            # The registry API first: it is the hot path, and routes match in order.
            *router.routes(),
            *OpsRoutes(components.db, components.driver, metrics).routes(),
            *admin_routes(
                settings, components.db, components.driver, components.manifests, components.auth
            ),
            *(
                TokenRoutes(components.auth, components.db).routes()
                if components.auth.service is not None
                else []
            ),
        ],
        middleware=[
            Middleware(
                RequestContextMiddleware, metrics=metrics, access_log_enabled=settings.access_log
            )
        ],
        lifespan=lifespan,
        exception_handlers={
            RegistryError: registry_error_handler,
            HTTPException: http_error_handler,
            Exception: unexpected_error_handler,
        },
    )
    app.state.components = components
    app.state.metrics = metrics
    return app


def app_from_environment() -> Starlette:
    """Factory for uvicorn workers: settings come from LADING_* variables."""
    return create_app(load_settings(), prepared=True)
