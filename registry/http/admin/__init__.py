"""The admin REST API under ``/admin/v1/`` (see ``docs/admin.md``)."""

from __future__ import annotations

import dataclasses

from starlette.responses import Response
from starlette.routing import BaseRoute, Route

import registry
from auth.factory import AuthComponents
from registry.db.engine import Database
from registry.domain.errors import CONFLICT, RegistryError
from registry.http.admin.account_routes import AccountApi
from registry.http.admin.auth import admin_authenticator
from registry.http.admin.framework import PREFIX, AdminRouter, Call, Endpoint, json_response
from registry.http.admin.openapi import build_document
from registry.http.admin.routes import AdminApi
from registry.services.admin_accounts import AccountAdmin
from registry.services.admin_catalog import CatalogService
from registry.services.admin_content import ContentReader
from registry.services.admin_gc import GcControl
from registry.services.admin_usage import UsageService
from registry.services.audit import AuditService
from registry.services.gc import GarbageCollector
from registry.services.inspect import InspectService
from registry.services.manifests import ManifestService
from registry.services.retention import RetentionService
from registry.settings import Settings
from storage.driver import Driver

METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH"]


def build_admin_api(
    settings: Settings, db: Database, driver: Driver, manifests: ManifestService
) -> AdminApi:
    audit = AuditService(db)
    usage = UsageService(db)
    content = ContentReader(db, driver, manifests)
    catalog = CatalogService(db, driver, content, usage)
    collector = GarbageCollector(
        db,
        driver,
        review_delay=settings.gc_review_delay,
        upload_purge_after=settings.upload_purge_after_hours * 3600,
    )
    return AdminApi(
        catalog=catalog,
        manifests=manifests,
        inspector=InspectService(manifests, content),
        retention=RetentionService(db, driver, catalog, audit),
        gc=GcControl(db, collector, audit),
        usage=usage,
        audit=audit,
    )


def admin_routes(
    settings: Settings,
    db: Database,
    driver: Driver,
    manifests: ManifestService,
    auth: AuthComponents,
) -> list[BaseRoute]:
    api = build_admin_api(settings, db, driver, manifests)
    accounts = AccountAdmin(
        db, auth.passwords, api.audit, configured_public=auth.settings.public_repositories
    )
    account_endpoints = AccountApi(accounts).endpoints()
    if settings.auth_mode == "external":
        account_endpoints = [_managed_elsewhere(e) for e in account_endpoints]
    endpoints = api.endpoints() + account_endpoints
    document = build_document(endpoints, registry.__version__)

    async def openapi(call: Call) -> Response:
        return json_response(document)

    # Served without credentials: it describes the API, it reveals no data.
    endpoints.append(
        Endpoint("GET", "/openapi.json", "openapi", "This document", openapi, "meta",
                 authenticated=False)
    )  # fmt: skip
    authenticator = admin_authenticator(settings.admin_token, settings.auth_mode, db, auth)
    router = AdminRouter(endpoints, authenticator)
    return [Route(PREFIX + "/{rest:path}", router.dispatch, methods=METHODS)]


async def _external_accounts(call: Call) -> Response:
    raise RegistryError(
        CONFLICT,
        "accounts, groups, permissions, robots and public repositories are managed by the "
        "external token issuer (auth_mode=external); Lading keeps no local accounts in this mode",
    )


def _managed_elsewhere(endpoint: Endpoint) -> Endpoint:
    """Account endpoints answer 409 under an external issuer: local rows would be ignored.

    Public repository patterns too: only Lading's own token issuer grants anonymous pulls
    from them; under an external issuer every request needs that issuer's token, so the
    issuer decides what anonymous clients may pull.
    """
    return dataclasses.replace(
        endpoint, handler=_external_accounts, other_statuses=(*endpoint.other_statuses, 409)
    )
